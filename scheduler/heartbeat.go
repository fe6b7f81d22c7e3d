package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// ReplicasScope is the fence scope under which replicas publish heartbeats. Job
// names may not start with "_", so it never collides with a job.
const ReplicasScope = "_replicas"

// DefaultHeartbeatInterval is how often a replica publishes its heartbeat.
const DefaultHeartbeatInterval = 10 * time.Second

// Replica is what a replica's heartbeat says about it.
type Replica struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	ConfigHash string    `json:"config_hash"`
	Started    time.Time `json:"started"`
	LastSeen   time.Time `json:"last_seen"`
	// Running lists "job@tick" of the ticks the replica was running.
	Running []string `json:"running,omitempty"`
}

// heartbeats publishes this replica's heartbeat until ctx ends.
func (s *Scheduler) heartbeats(ctx context.Context, started time.Time) {
	every := s.o.HeartbeatInterval
	if every == 0 {
		every = DefaultHeartbeatInterval
	}
	owner := locking.NewOwner() // one per process: backends that key records by owner keep one per replica
	for {
		rec := locking.Record{
			Key:     locking.Key{Scope: ReplicasScope, Name: s.o.Replica},
			Outcome: "heartbeat", Replica: s.o.Replica, Owner: owner,
			Started: started, Ended: s.o.Clock.Now(),
			Info: map[string]string{"version": s.o.Version, "config_hash": s.configHash(), "running": strings.Join(s.running(), ",")},
		}
		hctx, cancel := context.WithTimeout(ctx, s.o.TTL)
		if err := s.locker.AddRecord(hctx, rec); err != nil && ctx.Err() == nil {
			s.log.Debug("heartbeat not published", zap.Error(err))
		}
		cancel()
		if sleep(ctx, s.o.Clock, every) != nil {
			return
		}
	}
}

// running lists "job@tick" for the ticks this replica runs now.
func (s *Scheduler) running() []string {
	var out []string
	for _, j := range s.Jobs() {
		for _, r := range j.Running {
			tick := TickName(r.Tick)
			if r.Tick.IsZero() {
				tick = "manual"
			}
			out = append(out, j.Name+"@"+tick)
		}
	}
	slices.Sort(out)
	return out
}

// Replicas reads the replicas' heartbeats from the backend: the newest of each
// replica, among the last limit heartbeats, newest first.
func Replicas(ctx context.Context, l *locking.Locker, limit int) ([]Replica, error) {
	recs, err := l.Records(ctx, ReplicasScope, limit)
	if err != nil {
		return nil, fmt.Errorf("replica heartbeats: %w", err)
	}
	seen := map[string]bool{}
	var out []Replica
	for _, r := range recs {
		if seen[r.Key.Name] || r.Outcome != "heartbeat" {
			continue
		}
		seen[r.Key.Name] = true
		rep := Replica{Name: r.Key.Name, Version: r.Info["version"], ConfigHash: r.Info["config_hash"], Started: r.Started, LastSeen: r.Ended}
		if run := r.Info["running"]; run != "" {
			rep.Running = strings.Split(run, ",")
		}
		out = append(out, rep)
	}
	slices.SortFunc(out, func(a, b Replica) int { return b.LastSeen.Compare(a.LastSeen) })
	return out, nil
}

// SetConfigHash changes the table hash published in heartbeats (after a reload).
func (s *Scheduler) SetConfigHash(h string) {
	s.mu.Lock()
	s.o.ConfigHash = h
	s.mu.Unlock()
}

// ConfigHash returns the table hash this replica publishes.
func (s *Scheduler) ConfigHash() string { return s.configHash() }

func (s *Scheduler) configHash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o.ConfigHash
}
