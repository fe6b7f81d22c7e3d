package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Hash returns a stable fingerprint (hex SHA-256) of the effective table:
// what replicas must agree on to name and run the same ticks. It covers
// the backend type, the lock settings and every job's settings after
// defaults and ${VAR} expansion, independent of job order, formatting and
// comments. It leaves out per-replica settings (replica, shutdown_timeout,
// admin) and backend addresses and credentials, which may legitimately
// differ between replicas and should not leak through a fingerprint.
func (c *Config) Hash() string {
	type hashJob struct {
		Name, Spec, Timezone, DST, Anchor string
		Func                              string
		Args                              any
		Command                           []string
		Env                               map[string]string
		Dir                               string
		Timeout, RetryBackoff, Deadline   string
		Retries                           int
		Misfire, HolderLoss, Overlap      string
		Critical, Disabled                bool
	}
	type table struct {
		Version                string
		Backend, Namespace     string
		TTL, Margin, Retention string
		Jobs                   []hashJob
	}
	t := table{
		Version: "oncecron.config.v1",
		Backend: string(c.Backend.Type), Namespace: c.Lock.Namespace,
		TTL: c.Lock.TTL.String(), Margin: c.Lock.Margin.String(), Retention: c.Lock.Retention.String(),
	}
	for _, j := range c.Jobs {
		anchor := ""
		if !j.Anchor.IsZero() {
			anchor = j.Anchor.UTC().Format(time.RFC3339)
		}
		t.Jobs = append(t.Jobs, hashJob{
			Name: j.Name, Spec: j.Spec, Timezone: j.Timezone, DST: j.DST.String(), Anchor: anchor,
			Func: j.Func, Args: canonical(j.Args, 0), Command: j.Command, Env: j.Env, Dir: j.Dir,
			Timeout: j.Timeout.String(), RetryBackoff: j.RetryBackoff.String(), Deadline: j.StartingDeadline.String(),
			Retries: j.Retries, Misfire: string(j.Misfire), HolderLoss: string(j.OnHolderLoss), Overlap: string(j.Overlap),
			Critical: j.Critical, Disabled: j.Disabled,
		})
	}
	slices.SortFunc(t.Jobs, func(a, b hashJob) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.Marshal(t)
	if err != nil {
		panic("config: hashing a table: " + err.Error()) // only strings, ints, bools, slices and maps
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonical turns a YAML node into JSON-encodable values that do not
// depend on formatting: a scalar becomes "tag:value", a mapping its pairs
// sorted by key, a sequence its items.
func canonical(n *yaml.Node, depth int) any {
	if n == nil || depth > maxArgsDepth {
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		return canonical(n.Alias, depth+1)
	case yaml.DocumentNode, yaml.SequenceNode:
		items := make([]any, len(n.Content))
		for i, c := range n.Content {
			items[i] = canonical(c, depth+1)
		}
		return items
	case yaml.MappingNode:
		type kv struct {
			K string
			V any
		}
		pairs := make([]kv, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, _ := json.Marshal(canonical(n.Content[i], depth+1))
			pairs = append(pairs, kv{string(k), canonical(n.Content[i+1], depth+1)})
		}
		slices.SortStableFunc(pairs, func(a, b kv) int { return cmp.Compare(a.K, b.K) })
		return pairs
	default:
		return n.ShortTag() + ":" + n.Value
	}
}
