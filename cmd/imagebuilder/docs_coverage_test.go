package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsExamplesCovered: every document with console examples is run by
// a test (internal/doctest, or e2e for the demo). A new document with
// examples must be added to a test and to this list.
func TestDocsExamplesCovered(t *testing.T) {
	runBy := map[string]string{
		"build.md":          "TestBuildDocs (console examples), e2e TestDemoBoot (the demo table)",
		"diff.md":           "TestDiffDocs",
		"igvm.md":           "TestIgvmDocs",
		"initrd.md":         "TestInitrdDocExamples",
		"measure.md":        "TestMeasureDocs",
		"node-payload.md":   "TestPayloadDocExamples",
		"rootfs-inspect.md": "TestRootfsInspectDoc",
		"rootfs.md":         "TestRootfsDocs",
		"verify.md":         "TestVerifyDocs",
		"verity.md":         "TestVerityDocs",
	}
	// The tests named above exist in this package.
	src := ""
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		src += string(b)
	}
	for doc, tests := range runBy {
		for _, name := range regexp.MustCompile(`Test\w+`).FindAllString(tests, -1) {
			if strings.Contains(tests, "e2e "+name) {
				continue // a test of the e2e package
			}
			if !strings.Contains(src, "func "+name+"(") {
				t.Errorf("%s: %s is not a test of this package", doc, name)
			}
		}
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	var withExamples []string
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\n```console\n") {
			withExamples = append(withExamples, filepath.Base(d))
		}
	}
	for _, d := range withExamples {
		if runBy[d] == "" {
			t.Errorf("docs/%s has console examples that no test runs", d)
		}
	}
	if len(withExamples) == 0 || !slices.Contains(withExamples, "verity.md") {
		t.Fatalf("found no documents with examples: %v", withExamples)
	}
}
