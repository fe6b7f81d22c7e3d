package builtin_test

import (
	"context"
	"testing"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/jobs/builtin"
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

func TestHello(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		wantMsg string
		wantErr bool
	}{
		{"greeting", "greeting: hi", "hi from replica-b", false},
		{"default greeting", "", "hello from replica-b", false},
		{"unknown arg", "greting: hi", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var node yaml.Node
			if err := yaml.Unmarshal([]byte(tt.args), &node); err != nil {
				t.Fatal(err)
			}
			p, args, err := jobs.Default().Decode(builtin.HelloName, &node)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Decode succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zapcore.InfoLevel)
			log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
			run := jobs.Run{Job: "hello", Scheduled: time.Unix(0, 0), Token: 3, Attempt: 1, Replica: "replica-b", Args: args}
			if err := p.Call(context.Background(), run.WithLogger(log)); err != nil {
				t.Fatal(err)
			}
			entries := logs.All()
			if len(entries) != 1 || entries[0].Message != tt.wantMsg {
				t.Fatalf("logged %v, want %q", entries, tt.wantMsg)
			}
			if f := entries[0].ContextMap(); f["job"] != "hello" || f["token"] != uint64(3) || f["replica"] != "replica-b" {
				t.Fatalf("fields = %v", f)
			}
		})
	}
}

func ExampleHello() {
	var node yaml.Node
	_ = yaml.Unmarshal([]byte("greeting: bonjour"), &node)
	p, args, err := jobs.Default().Decode("example.hello", &node)
	if err != nil {
		panic(err)
	}
	run := jobs.Run{
		Job:       "hello",
		Scheduled: time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC),
		Token:     1,
		Attempt:   1,
		Replica:   "replica-a",
		Args:      args,
	}.WithLogger(zap.NewExample())
	_ = p.Call(context.Background(), run)
	// Output:
	// {"level":"info","msg":"bonjour from replica-a","job":"hello","scheduled":"2026-11-25T02:30:00.000Z","token":1,"attempt":1,"replica":"replica-a"}
}
