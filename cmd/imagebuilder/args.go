package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// exactArgs is cobra.ExactArgs with the error marked as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with the error marked as a usage error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usagef("%s: takes %d to %d arguments, got %d", cmd.CommandPath(), min, max, len(args))
		}
		return nil
	}
}

// isCobraUsageError recognises the errors cobra itself returns for a wrong
// command line (unknown command, missing required flag, bad arguments).
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "required flag", "accepts ", "requires at least", "invalid argument", "unknown flag", "unknown shorthand", "flag needs"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}
