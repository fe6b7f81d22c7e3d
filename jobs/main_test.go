package jobs_test

import (
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newLogger returns a logger that writes to t's log (zaptest) and records
// every entry for inspection.
func newLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	obsCore, logs := observer.New(zapcore.DebugLevel)
	tl := zaptest.NewLogger(t)
	return zap.New(zapcore.NewTee(tl.Core(), obsCore)), logs
}

// doc parses src into a YAML document node.
func doc(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return &n
}
