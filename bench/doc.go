// Package bench compares oncecron's lock backends with the lock libraries
// users would pick instead, on the same Redis, etcd and ZooKeeper servers.
// It is its own module so that those libraries never enter oncecron's go.mod;
// everything is in the _test.go files (go test -bench . in this directory, or
// scripts/bench.sh).
package bench
