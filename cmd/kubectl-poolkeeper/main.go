// Command kubectl-poolkeeper is the kubectl plugin of poolkeeper
// (`kubectl poolkeeper ...`): a pool at a glance and the xe-style intents
// (host-forget, designate-master, backup, backup-verify). It only reads
// objects and writes intents (spec fields and new objects); it never writes
// the status the operator owns.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitOK = 0
	// exitFailed: the command ran and what it checked or waited for failed
	// (a backup Failed, a verification that did not pass, a refused plan).
	exitFailed = 1
	// exitUsage: wrong arguments or flags.
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs the plugin with args and returns the exit status.
func run(args []string, in io.Reader, out, errOut io.Writer) int {
	return runWith(newOptions(in, out, errOut), args)
}

// runWith runs the plugin with o and args and returns the exit status.
func runWith(o *options, args []string) int {
	root := newRootCommand(o)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(o.errOut, "kubectl-poolkeeper: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

// usageError is an error in the arguments or flags.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
