package measure

import (
	"bytes"
	"context"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/testvectors"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
)

// TestLinuxbootVectors builds every igvm-tooling vector case with our own
// builder (pkg/igvm/linuxboot) from the case's inputs and checks that our
// file's mshv digest equals igvmgen's expected_launch_digest.
func TestLinuxbootVectors(t *testing.T) {
	for _, c := range testvectors.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			k, err := linuxboot.BzImageOptions{AllowTruncated: true}.Parse(testvectors.Input(t, c.Kernel))
			if err != nil {
				t.Fatal(err)
			}
			opts := linuxboot.Options{
				Cmdline:       c.Append,
				PvalidateOpt:  c.Options.PvalidateOpt == 1,
				EncryptedPage: c.Options.EncryptedPage == 1,
				SVME:          c.Options.SVME == 1,
			}
			if c.Initrd != nil {
				opts.Initrd = testvectors.Input(t, *c.Initrd)
			}
			if c.ACPI == "acpi-clh" {
				a, err := linuxboot.ACPIFromDir(testvectors.Path("acpi/acpi-clh-aml"))
				if err != nil {
					t.Fatal(err)
				}
				opts.ACPI = a
			}
			img, err := linuxboot.Build(context.Background(), k, opts)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := img.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(buf.Bytes()), int64(buf.Len()), Options{Profile: ProfileMSHV})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Digest.String(); got != c.ExpectedLaunchDigest {
				t.Errorf("our %s: mshv digest %s, igvmgen %s", c.Name, got, c.ExpectedLaunchDigest)
			}
		})
	}
}
