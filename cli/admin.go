package cli

import (
	"context"
	"fmt"
	"net"
	"os"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/admin"
	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/scheduler"
)

// startAdmin binds the admin listener of cfg.Admin.Listen and serves the
// admin endpoints of s until stop is called; stop returns once the listener
// has stopped (gracefully, bounded by admin.ShutdownTimeout). The server's
// Observe should be fed the scheduler's events.
func startAdmin(cfg *config.Config, s *scheduler.Scheduler, locker *locking.Locker, replica string, log *zap.Logger) (srv *admin.Server, stop func(), err error) {
	zones := map[string]string{}
	for _, j := range cfg.Jobs {
		if j.Location != nil {
			zones[j.Name] = j.Location.String()
		}
	}
	token := os.Getenv(admin.TokenEnv)
	srv, err = admin.New(admin.Options{
		Scheduler: s, Locker: locker, Logger: log, Replica: replica, Version: Version, ConfigHash: cfg.Hash(),
		Token: token, Backend: string(cfg.Backend.Type), Zones: zones,
	})
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: admin.listen: %w", cfg.File, err)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); !isLoopback(host) {
		log.Warn("the admin endpoint listens beyond loopback; its read-only endpoints need no token", zap.String("addr", cfg.Admin.Listen))
	}
	if token == "" {
		log.Info(admin.TokenEnv + " is not set: the admin endpoint refuses state-changing requests")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("admin endpoint failed", zap.Error(err))
		}
	}()
	return srv, func() { cancel(); <-done }, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
