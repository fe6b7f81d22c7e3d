// Command scheduler runs an oncecron replica; see `scheduler help`.
package main

import (
	"context"
	"os"

	"github.com/oncecron/oncecron/cli"
	_ "github.com/oncecron/oncecron/jobs/builtin" // example.hello
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Options{}))
}
