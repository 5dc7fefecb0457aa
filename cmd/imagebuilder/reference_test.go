package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/golden"
)

// TestReferenceDocs keeps docs/reference.md equal to what the commands
// say about themselves (make golden regenerates it).
func TestReferenceDocs(t *testing.T) {
	golden.Check(t, "../../docs/reference.md", []byte(referenceDoc(newRootCmd())))
}

// referenceDoc renders every visible command: usage, description,
// examples and flags, in the order of the command tree.
func referenceDoc(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("# Command reference\n\n")
	b.WriteString("Generated from the commands' own help by `TestReferenceDocs` " +
		"(cmd/imagebuilder/reference_test.go); `make golden` rewrites it. " +
		"Conventions shared by every command: [cli.md](cli.md).\n\n")
	var all []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		all = append(all, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	for _, c := range all {
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", c.CommandPath(), anchor(c.CommandPath()), c.Short)
	}
	for _, c := range all {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", c.CommandPath(), c.Short)
		fmt.Fprintf(&b, "```\n%s\n```\n", c.UseLine())
		if c.Long != "" {
			fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(c.Long))
		}
		if c.Example != "" {
			fmt.Fprintf(&b, "\nExamples:\n\n```\n%s\n```\n", strings.TrimRight(c.Example, "\n"))
		}
		if subs := visible(c.Commands()); len(subs) > 0 {
			b.WriteString("\nSubcommands:\n\n")
			for _, s := range subs {
				fmt.Fprintf(&b, "- `%s`: %s\n", s.Name(), s.Short)
			}
		}
		if f := c.NonInheritedFlags().FlagUsages(); strings.TrimSpace(f) != "" {
			fmt.Fprintf(&b, "\nFlags:\n\n```\n%s```\n", f)
		}
	}
	return b.String()
}

func visible(cs []*cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range cs {
		if !c.Hidden && c.Name() != "help" {
			out = append(out, c)
		}
	}
	return out
}

// anchor is the GitHub-style anchor of a heading.
func anchor(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "-") }
