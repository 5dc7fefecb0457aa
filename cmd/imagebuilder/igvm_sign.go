package main

import (
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

func init() { registerSub("igvm", newIgvmSignCmd) }

type igvmSignFlags struct {
	key, authorKey, out    string
	keyless, asJSON        bool
	profile, cpu, features string
	host                   string
	vcpus                  int
	familyID, imageID      string
	guestSVN               uint32
}

func newIgvmSignCmd() *cobra.Command {
	var fl igvmSignFlags
	cmd := &cobra.Command{
		Use:   "sign FILE (--key KEY.pem | --keyless) [-o OUT]",
		Short: "Set the SEV-SNP ID block of an IGVM file",
		Long: `sign measures an IGVM file, builds its SEV-SNP ID block (the launch digest,
family and image ids, guest SVN and the file's guest policy), signs it and
writes the file again with that SNP_ID_BLOCK header (replacing any it had).
The firmware refuses to launch the guest if the digest or policy differ.

The digest is the one the hypervisor named by --profile measures (see
"imagebuilder measure igvm"): mshv (default; independent of the vCPU count)
or kvm (give --vcpus and, for more than one, --cpu).

--key is the ID key, an ECDSA P-384 private key in PEM (SEC1 "EC PRIVATE
KEY" as openssl ecparam -genkey writes, or PKCS #8); signatures are
deterministic (RFC 6979), so the same inputs give the same file. --author-key
also signs the ID key. --keyless needs no secret: the signature is a fixed
(r, s) and the ID key is recovered from it, so anyone can recreate the
identical file from the digest alone (the attestation report's ID key digest
then only says the block is the key-less one for this digest).

The output replaces FILE unless -o is given; it is written under a temporary
name and renamed when complete.`,
		Example: `  imagebuilder igvm sign guest.igvm --key id-key.pem -o guest.signed.igvm
  imagebuilder igvm sign guest.igvm --keyless --profile kvm --vcpus 2 --cpu genoa`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runIgvmSign(cmd, args[0], &fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.key, "key", "", "ID key: ECDSA P-384 private key (PEM)")
	f.BoolVar(&fl.keyless, "keyless", false, "sign without a key: fixed signature, recovered public key")
	f.StringVar(&fl.authorKey, "author-key", "", "author key (PEM, P-384) that signs the ID key")
	f.StringVarP(&fl.out, "output", "o", "", "output file (default: replace FILE)")
	f.StringVar(&fl.profile, "profile", "mshv", "whose launch digest the block carries: mshv or kvm")
	f.IntVar(&fl.vcpus, "vcpus", 1, "vCPU count (kvm)")
	f.StringVar(&fl.cpu, "cpu", "", "vCPU model (kvm with more than one vCPU), e.g. genoa, EPYC-Milan")
	f.StringVar(&fl.features, "guest-features", "", "guest SEV features as hex (kvm; default: the file's VMSA)")
	f.StringVar(&fl.host, "host-kernel", measure.DefaultHostKernel.String(), "host Linux version (kvm)")
	f.StringVar(&fl.familyID, "family-id", "", "ID block family id, 16 bytes as hex (default zero)")
	f.StringVar(&fl.imageID, "image-id", "", "ID block image id, 16 bytes as hex (default zero)")
	f.Uint32Var(&fl.guestSVN, "guest-svn", 0, "ID block guest SVN")
	f.BoolVar(&fl.asJSON, "json", false, "print the digest and key digests as JSON")
	return cmd
}

// igvmSignResult is what "igvm sign" prints.
type igvmSignResult struct {
	Output          string         `json:"output"`
	Profile         string         `json:"profile"`
	Digest          measure.Digest `json:"digest"`
	Policy          string         `json:"policy"`
	IDKeyDigest     measure.Digest `json:"id_key_digest"`
	AuthorKeyDigest string         `json:"author_key_digest,omitempty"`
	Keyless         bool           `json:"keyless"`
}

func runIgvmSign(cmd *cobra.Command, path string, fl *igvmSignFlags) error {
	if (fl.key == "") == !fl.keyless {
		return usagef("igvm sign: give exactly one of --key KEY.pem or --keyless")
	}
	if fl.keyless && fl.authorKey != "" {
		return usagef("igvm sign: --author-key needs --key (the key-less mode has no author)")
	}
	p, err := measure.ParseProfile(fl.profile)
	if err != nil {
		return usagef("igvm sign --profile: %v", err)
	}
	if fl.vcpus < 1 || fl.vcpus > measure.MaxVCPUs {
		return usagef("igvm sign --vcpus %d: want 1 to %d", fl.vcpus, measure.MaxVCPUs)
	}
	opts := measure.IGVMSignOptions{Measure: measure.Options{Profile: p, VCPUs: fl.vcpus}, GuestSVN: fl.guestSVN}
	if fl.cpu != "" {
		m, err := measure.LookupCPU(fl.cpu)
		if err != nil {
			return usagef("igvm sign --cpu: %v", err)
		}
		opts.Measure.CPU = &m
	}
	if p == measure.ProfileKVM && fl.vcpus > 1 && fl.cpu == "" {
		return usagef("igvm sign: --profile kvm with --vcpus %d needs --cpu", fl.vcpus)
	}
	if fl.features != "" {
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(fl.features), "0x"), 16, 64)
		if err != nil {
			return usagef("igvm sign --guest-features %q: want a hex number such as 0x1", fl.features)
		}
		opts.Measure.GuestFeatures = &v
	}
	if opts.Measure.HostKernel, err = measure.ParseHostKernel(fl.host); err != nil {
		return usagef("igvm sign --host-kernel: %v", err)
	}
	for _, id := range []struct {
		flag, val string
		dst       *[16]byte
	}{{"--family-id", fl.familyID, &opts.FamilyID}, {"--image-id", fl.imageID, &opts.ImageID}} {
		if id.val == "" {
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(id.val, "0x"))
		if err != nil || len(b) != 16 {
			return usagef("igvm sign %s %q: want 16 bytes as 32 hex digits", id.flag, id.val)
		}
		copy(id.dst[:], b)
	}
	if fl.key != "" {
		if opts.IDKey, err = signReadKey(fl.key); err != nil {
			return err
		}
	}
	if fl.authorKey != "" {
		if opts.AuthorKey, err = signReadKey(fl.authorKey); err != nil {
			return err
		}
	}

	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	f, err := igvm.Open(in, st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s, err := measure.SignIGVM(f, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var b igvm.Builder
	for _, h := range f.Headers {
		if _, ok := h.(*igvm.SNPIDBlock); ok {
			continue // replaced by ours
		}
		var d *io.SectionReader
		if igvm.HasData(h) {
			d = f.DataReader(h)
		}
		b.Add(h, d)
	}
	b.Add(s.Header, nil)
	outPath := fl.out
	if outPath == "" {
		outPath = path
	}
	// Everything that can fail is done before the output is written.
	res := igvmSignResult{Output: outPath, Profile: string(p), Digest: s.Block.Digest, Policy: fmt.Sprintf("%#x", uint64(s.Block.Policy)), Keyless: fl.keyless}
	if res.IDKeyDigest, err = s.Auth.IDKeyDigest(); err != nil {
		return err
	}
	if s.Auth.AuthorKey != nil {
		ak, err := s.Auth.AuthorKeyDigest()
		if err != nil {
			return err
		}
		res.AuthorKeyDigest = ak.String()
	}
	perm := st.Mode().Perm()
	out, err := atomicfile.Create(outPath, perm)
	if err != nil {
		return err
	}
	if _, err := b.WriteTo(out); err != nil {
		out.Abort()
		return fmt.Errorf("%s: %w", outPath, err)
	}
	if err := out.Commit(); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if fl.asJSON {
		return ovmfWriteJSON(w, res)
	}
	fmt.Fprintf(w, "wrote %s\ndigest:        %s (%s)\npolicy:        %s\nid key digest: %s\n", outPath, res.Digest, p, s.Block.Policy, res.IDKeyDigest)
	if res.AuthorKeyDigest != "" {
		fmt.Fprintf(w, "author key digest: %s\n", res.AuthorKeyDigest)
	}
	return nil
}

// signReadKey reads a P-384 private key in PEM.
func signReadKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := measure.ParseP384PrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
