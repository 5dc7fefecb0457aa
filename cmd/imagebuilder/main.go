// Command imagebuilder builds the guest image of a confidential Kubernetes
// pod VM (IGVM file, dm-verity root disk, initrd) reproducibly, and computes
// the SEV-SNP launch measurement an attestation service expects.
//
// This package is the command-line front end only: every area lives in its
// own package under pkg/, and each area registers its cobra command from a
// file of its own here (see register).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// commands holds the constructors of the top-level commands; each area's
// file appends to it from an init function, so areas do not edit one list.
var commands []func() *cobra.Command

// subcommands holds constructors of commands that an area adds under a
// top-level command owned by another file (for example "igvm sign" under
// "igvm"), keyed by the parent's name.
var subcommands = map[string][]func() *cobra.Command{}

// register adds a top-level command constructor.
func register(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// registerSub adds a constructor of a subcommand of the top-level command
// named parent.
func registerSub(parent string, newCmd func() *cobra.Command) {
	subcommands[parent] = append(subcommands[parent], newCmd)
}

// usageError marks an error as a mistake in how the command was called
// (exit code 2) rather than a failure of the work itself (exit code 1).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitStatus is an error that chooses the exit code: diff exits 1 when its
// inputs differ (no message: the output says how) and 2 on trouble, as
// diff(1) does.
type exitStatus struct {
	code int
	err  error // nil: exit without a message
}

func (e exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitStatus) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2) with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "imagebuilder",
		Short: "Build and measure the guest image of a confidential pod VM, reproducibly",
		Long: `imagebuilder builds the guest image of an AMD SEV-SNP confidential pod VM:
the IGVM file (kernel, initrd, command line), the dm-verity protected root
filesystem disk and the expected launch measurement. Identical inputs give
identical bytes on every machine; all timestamps come from SOURCE_DATE_EPOCH.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		Args:          noSubcommandArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s: %w", c.CommandPath(), err)}
	})
	for _, newCmd := range commands {
		cmd := newCmd()
		for _, newSub := range subcommands[cmd.Name()] {
			cmd.AddCommand(newSub())
		}
		root.AddCommand(cmd)
	}
	return root
}

// interruptGrace is how long a command may take to stop after SIGINT or
// SIGTERM cancelled its context before the process cleans up and exits.
const interruptGrace = time.Second

// run executes the CLI with args and returns the process exit code; errors
// are printed as one line on stderr. SIGINT and SIGTERM cancel the
// command's context; a command that has not returned a second later is cut
// short: registered cleanups run (atomicfile.Cleanup) and the process
// exits with 128 + the signal number, as a shell reports it.
func run(args []string) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(interruptedError{s})
			select {
			case <-sigs:
			case <-time.After(interruptGrace):
			}
			atomicfile.Cleanup()
			fmt.Fprintf(os.Stderr, "imagebuilder: interrupted by %v\n", s)
			os.Exit(signalExitCode(s))
		case <-ctx.Done():
		}
	}()

	root := newRootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var intr interruptedError
	if errors.As(context.Cause(ctx), &intr) {
		atomicfile.Cleanup()
		fmt.Fprintf(os.Stderr, "imagebuilder: %s: %v\n", commandName(cmd), intr)
		return signalExitCode(intr.sig)
	}
	// Messages that start with a command path ("imagebuilder verity
	// format: ...") would repeat the program name after the prefix.
	msg := strings.TrimPrefix(err.Error(), root.Name()+" ")
	if es, ok := err.(exitStatus); ok {
		if es.err != nil {
			fmt.Fprintf(os.Stderr, "imagebuilder: %s\n", oneLine(msg))
		}
		return es.code
	}
	var ce configError
	if errors.As(err, &ce) {
		// A config file error: exit 2, and no pointer to --help.
		fmt.Fprintf(os.Stderr, "imagebuilder: %s\n", oneLine(msg))
		return exitUsage
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		// One line, with the pointer to the help on it.
		if cmd != nil {
			msg += fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())
		}
		fmt.Fprintf(os.Stderr, "imagebuilder: %s\n", oneLine(msg))
		return exitUsage
	}
	fmt.Fprintf(os.Stderr, "imagebuilder: %s\n", oneLine(msg))
	return exitFailure
}

// commandName is the command path without the program name.
func commandName(cmd *cobra.Command) string {
	if cmd == nil {
		return "imagebuilder"
	}
	return strings.TrimPrefix(cmd.CommandPath(), "imagebuilder ")
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
}

// interruptedError is the cause of the context cancelled by a signal.
type interruptedError struct{ sig os.Signal }

func (e interruptedError) Error() string { return "interrupted by " + e.sig.String() }

func signalExitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitFailure
}

func main() { os.Exit(run(os.Args[1:])) }
