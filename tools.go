//go:build tools

// This file pins modules that the packages of this repository are about to import,
// so that `go mod tidy` keeps them while the code that uses them is written.
package oncecron

import (
	_ "github.com/anishathalye/porcupine"
	_ "github.com/go-zookeeper/zk"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/robfig/cron/v3"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/sync/errgroup"
	_ "gopkg.in/yaml.v3"
)
