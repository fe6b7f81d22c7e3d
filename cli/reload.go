package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/scheduler"
)

// reloadPoll is how often a running replica looks at its table file.
const reloadPoll = 2 * time.Second

// watchTable reloads the table on SIGHUP and when the file changes. A table
// that does not validate is refused with its errors logged; the old one keeps
// running. Changes to the backend or lock sections need a restart.
func watchTable(ctx context.Context, path string, cur *config.Config, s *scheduler.Scheduler, b locking.Backend, o Options, log *zap.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sum := fileSum(path)
	t := time.NewTicker(reloadPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the cron table", zap.String("config", path))
		case <-t.C:
			next := fileSum(path)
			if bytes.Equal(next, sum) {
				continue
			}
			log.Info("the cron table file changed: reloading", zap.String("config", path))
		}
		sum = fileSum(path)
		next, err := load(path, o)
		if err != nil {
			for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
				log.Error("new cron table refused; the old one keeps running", zap.String("error", line))
			}
			s.ReloadFailed(err)
			continue
		}
		if next.Backend.Type != cur.Backend.Type || next.Lock != cur.Lock {
			log.Warn("changes to the backend or lock sections take effect after a restart")
		}
		jobs, err := schedulerJobs(next, o.Registry)
		if err == nil {
			err = s.Reload(jobs)
		}
		if err != nil {
			log.Error("new cron table refused; the old one keeps running", zap.Error(err))
			s.ReloadFailed(err)
			continue
		}
		if m, ok := b.(*memlock.Backend); ok {
			m.SetMaxRetention(memoryKeep(next))
		}
		s.SetConfigHash(next.Hash())
		log.Info("cron table reloaded", zap.Int("jobs", len(jobs)), zap.String("table_hash", next.Hash()))
	}
}

func fileSum(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	h := sha256.Sum256(data)
	return h[:]
}
