package diff_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/diff"
)

// Compare two files (here two kernel command lines) and print what
// differs, as `imagebuilder diff` does.
func ExampleComparePaths() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	os.WriteFile(a, []byte("console=ttyS0 panic=-1\n"), 0o644)
	os.WriteFile(b, []byte("console=ttyS0 panic=-1 quiet\n"), 0o644)

	res, err := diff.ComparePaths(context.Background(), a, b, diff.Options{})
	if err != nil {
		log.Fatal(err) // an *diff.InputError names the artifact at fault
	}
	fmt.Println("identical:", res.Identical, "kind:", res.Kind)
	for _, d := range res.Differences {
		fmt.Println(d.Line())
	}
	// Output:
	// identical: false kind: text
	// lines line 1: "console=ttyS0 panic=-1" -> "console=ttyS0 panic=-1 quiet" (first difference at byte 22; 23 bytes and 29 bytes in all)
}
