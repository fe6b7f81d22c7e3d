// Package bench compares oncecron's lock backends with the lock libraries
// users would pick instead, on the same Redis, etcd and ZooKeeper servers.
// It is its own module so that those libraries never enter oncecron's go.mod;
// the lock benchmarks are in the _test.go files (go test -bench . in this
// directory, or scripts/bench.sh).
//
// cmd/firebench compares whole schedulers instead: fire precision of oncecron
// with three replicas on each backend beside robfig/cron and go-co-op/gocron
// v2 with a distributed locker, duplicates and misses included, and the tick
// rate each backend sustains (scripts/bench.sh -precision, -scale).
package bench
