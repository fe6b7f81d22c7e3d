package chaos

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oncecron/oncecron/cli"
	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
)

// run is one start of a job, as the job program wrote it.
type run struct {
	job     string
	tick    time.Time
	token   uint64
	replica string
	attempt int
	start   time.Time
	end     time.Time // zero: no end line (cancelled)
}

func (r *run) key() tickKey { return tickKey{r.job, r.tick} }

func (r *run) String() string {
	return fmt.Sprintf("%s@%s token %d on %s attempt %d started %s", r.job, r.tick.Format(time.RFC3339),
		r.token, r.replica, r.attempt, r.start.Format("15:04:05.000"))
}

type tickKey struct {
	job  string
	tick time.Time
}

func (k tickKey) String() string { return k.job + "@" + k.tick.Format(time.RFC3339) }

// readRuns reads the output files of the replicas.
func readRuns(dir string, rs []*replica) ([]*run, error) {
	type id struct {
		job, tick, replica string
		token              uint64
	}
	byID := map[id]*run{}
	var out []*run
	for _, rp := range rs {
		f, err := os.Open(filepath.Join(dir, "out-"+rp.name+".txt"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) != 7 {
				f.Close()
				return nil, fmt.Errorf("chaos: %s: malformed line %q", f.Name(), sc.Text())
			}
			tick, err1 := time.Parse(time.RFC3339, fs[2])
			token, err2 := strconv.ParseUint(fs[3], 10, 64)
			attempt, err3 := strconv.Atoi(fs[5])
			ns, err4 := strconv.ParseInt(fs[6], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
				f.Close()
				return nil, fmt.Errorf("chaos: %s: malformed line %q", f.Name(), sc.Text())
			}
			at := time.Unix(0, ns)
			k := id{fs[1], fs[2], fs[4], token}
			r := byID[k]
			if r == nil {
				r = &run{job: fs[1], tick: tick, token: token, replica: fs[4], attempt: attempt}
				byID[k] = r
				out = append(out, r)
			}
			switch fs[0] {
			case "start":
				if !r.start.IsZero() {
					f.Close()
					return nil, fmt.Errorf("chaos: %s: run started twice with the same token: %q", f.Name(), sc.Text())
				}
				r.start = at
			case "end":
				r.end = at
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readRecords reads every job's run records through the backend, directly
// (not through a proxy), the way a replica opens it.
func (r *runner) readRecords(ctx context.Context) ([]locking.Record, error) {
	path := filepath.Join(r.dir, "table-reader.yaml")
	if err := os.WriteFile(path, []byte(table(r.o.Backend, r.server.addr, r.dir)), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := cli.OpenBackend(octx, cfg, zap.NewNop())
	if err != nil {
		return nil, fmt.Errorf("chaos: opening the backend to read records: %w", err)
	}
	defer b.Close()
	var out []locking.Record
	for _, j := range jobSpecs {
		recs, err := b.Records(octx, j.name, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("chaos: records of %s: %w", j.name, err)
		}
		out = append(out, recs...)
	}
	return out, nil
}
