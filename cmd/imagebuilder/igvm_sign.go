package main

import (
	"crypto/ecdsa"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func init() { registerSub("igvm", newIgvmSignCmd) }

type igvmSignFlags struct {
	key, authorKey, out string
	keyless             bool
	json                jsonFlag
	profile             profileFlag
	vcpus               vcpusFlag
	cpu                 cpusFlag
	kvm                 kvmFlags
	familyID, imageID   id16Flag
	guestSVN            uint32
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
or kvm (give --vcpus and, for more than one, --cpu; a file QEMU or KVM
would refuse is an error naming the rule, "igvm build --layout kvm" makes
one they accept). The kvm digests follow the QEMU and Linux sources; no
attestation report has confirmed them yet, so an ID block signed for kvm
may carry a digest the hardware does not report.

--key is the ID key, an ECDSA P-384 private key in PEM (SEC1 "EC PRIVATE
KEY" as "openssl ecparam -name secp384r1 -genkey" writes it, with or
without its EC PARAMETERS block, or PKCS #8); signatures are deterministic
(RFC 6979), so the same inputs give the same file. --author-key also signs
the ID key. --keyless needs no secret: the signature is a fixed (r, s) and
the ID key is recovered from it, so anyone can recreate the identical file
from the digest alone (the attestation report's ID key digest then only
says the block is the key-less one for this digest).

The output replaces FILE unless -o is given (-o - writes to stdout); it
appears complete or not at all. It ends with one summary line (on stderr
with -o -).`,
		Example: `  imagebuilder igvm sign podvm.igvm --key id-key.pem -o podvm.signed.igvm
  imagebuilder igvm sign podvm.igvm --keyless --profile kvm --vcpus 2 --cpu genoa`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runIgvmSign(cmd, args[0], &fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.key, "key", "", "ID key: ECDSA P-384 private key (PEM)")
	f.BoolVar(&fl.keyless, "keyless", false, "sign without a key: fixed signature, recovered public key")
	f.StringVar(&fl.authorKey, "author-key", "", "author key (PEM, P-384) that signs the ID key")
	addOutputFlag(cmd, &fl.out, "output file, - for stdout (default: replace FILE)", false)
	f.Var(&fl.profile, "profile", "whose launch digest the block carries: mshv (default) or kvm")
	f.Var(&fl.vcpus, "vcpus", "vCPU count (kvm; one count: the block carries one digest)")
	f.Var(&fl.cpu, "cpu", "vCPU model (kvm with more than one vCPU): milan, genoa, EPYC-Milan, ... or 0xSIGNATURE")
	fl.kvm.add(cmd)
	f.Var(&fl.familyID, "family-id", "ID block family id, 16 bytes as hex (default zero)")
	f.Var(&fl.imageID, "image-id", "ID block image id, 16 bytes as hex (default zero)")
	f.Uint32Var(&fl.guestSVN, "guest-svn", 0, "ID block guest SVN")
	addJSONFlag(cmd, &fl.json)
	completeValues(cmd, "profile", "mshv", "kvm")
	completeValues(cmd, "cpu", cpuCompletions()...)
	return cmd
}

// igvmSignResult is what --json prints.
type igvmSignResult struct {
	Output string `json:"output"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	*measure.SignedIGVM
}

func runIgvmSign(cmd *cobra.Command, path string, fl *igvmSignFlags) error {
	if (fl.key == "") == !fl.keyless {
		return usagef("%s: give exactly one of --key KEY.pem or --keyless", cmd.CommandPath())
	}
	if fl.keyless && fl.authorKey != "" {
		return usagef("%s: --author-key needs --key (the key-less mode has no author)", cmd.CommandPath())
	}
	if fl.out == "-" && fl.json.toStdout() {
		return usagef("%s: -o - and --json both write to stdout; give --json=FILE", cmd.CommandPath())
	}
	if fl.out != "" {
		if err := checkOutputPath(cmd, fl.out, true); err != nil {
			return err
		}
	}
	p := measure.ProfileMSHV
	if len(fl.profile.profiles) == 1 {
		p = fl.profile.profiles[0]
	}
	vcpus := fl.vcpus.list(1)
	if len(vcpus) != 1 {
		return usagef("%s: --vcpus: one count (the ID block carries the digest of one vCPU count)", cmd.CommandPath())
	}
	cpu, err := fl.cpu.one(cmd)
	if err != nil {
		return err
	}
	if p == measure.ProfileKVM && vcpus[0] > 1 && cpu == nil {
		return usagef("%s: --profile kvm with --vcpus %d needs --cpu (the APs' VMSAs hold its signature)", cmd.CommandPath(), vcpus[0])
	}
	opts := measure.IGVMSignOptions{
		Measure:  measure.Options{Profile: p, VCPUs: vcpus[0], CPU: cpu},
		FamilyID: fl.familyID.v, ImageID: fl.imageID.v, GuestSVN: fl.guestSVN,
	}
	fl.kvm.options(&opts.Measure)
	if fl.key != "" {
		if opts.IDKey, err = signReadKey(cmd, "--key", fl.key); err != nil {
			return err
		}
	}
	if fl.authorKey != "" {
		if opts.AuthorKey, err = signReadKey(cmd, "--author-key", fl.authorKey); err != nil {
			return err
		}
	}

	f, fh, err := openIGVM(cmd, path)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return commandErr(cmd, path, err)
	}
	s, err := measure.SignIGVM(cmd.Context(), f, opts)
	if err != nil {
		return commandErr(cmd, path, err)
	}
	warnSkipped(cmd, path, s.Measurement.KVMChecksSkipped)

	outPath := fl.out
	if outPath == "" {
		outPath = path
	}
	var set atomicfile.Set
	defer set.Abort()
	var w io.Writer = cmd.OutOrStdout()
	summary := cmd.OutOrStdout()
	if outPath == "-" {
		summary = cmd.ErrOrStderr()
	} else {
		out, err := set.Create(outPath, st.Mode().Perm())
		if err != nil {
			return commandErr(cmd, outPath, err)
		}
		w = out
	}
	writeJSON, err := fl.json.stage(&set)
	if err != nil {
		return commandErr(cmd, "--json", err)
	}
	hw := newHashingWriter(w)
	if _, err := s.WriteIGVM(cmd.Context(), hw); err != nil {
		return commandErr(cmd, outPath, err)
	}
	res := igvmSignResult{Output: outPath, Size: hw.n, SHA256: hw.sum(), SignedIGVM: s}
	if err := writeJSON(res); err != nil {
		return commandErr(cmd, "--json", err)
	}
	if err := set.Commit(); err != nil {
		return commandErr(cmd, outPath, err)
	}
	if fl.json.toStdout() {
		return printJSON(cmd.OutOrStdout(), res)
	}
	details := []string{fmt.Sprintf("digest %s (%s)", s.Digest, s.Profile), "policy " + hexnum.Uint64(s.Policy).String(), "id key digest " + s.IDKeyDigest.String()}
	if s.AuthorKeyDigest != nil {
		details = append(details, "author key digest "+s.AuthorKeyDigest.String())
	}
	printSummary(summary, outPath, hw.n, hw.sum(), details...)
	return nil
}

// signReadKey reads a P-384 private key in PEM.
func signReadKey(cmd *cobra.Command, flag, path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, commandErr(cmd, flag+" "+path, err)
	}
	k, err := snp.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, commandErr(cmd, flag+" "+path, err)
	}
	return k, nil
}
