package podvm

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// checkTargets refuses, before anything is built, a target the IGVM
// layout cannot satisfy and a spec.runtime that names no usable target:
// config errors. (Load checks the same; a Config made in Go without Load
// is checked here.)
func checkTargets(c *Config) error {
	d := c.Defaulted()
	if err := d.checkLayout(&d.Spec); err != nil {
		return err
	}
	return d.checkRuntime(&d.Spec)
}

// preflight is what the build checks and reads before its first stage:
// every input file exists, the guest init, the firmware images and the ID
// keys are usable.
type preflight struct {
	initPath  string
	initData  []byte
	initInput FileInput
	// firmware by target index (qemu-ovmf targets).
	firmware   map[int]*measure.OVMF
	fwInputs   []FileInput
	fwSHA256   map[int]string
	idKey      *ecdsa.PrivateKey
	authorKey  *ecdsa.PrivateKey
	idKeyIn    *KeyInput
	authorIn   *KeyInput
	keySHA256s map[string]string
	// kataTemplate is spec.runtime.kataConfigTemplate's bytes, and
	// kataInput its record; nil without one.
	kataTemplate []byte
	kataInput    *FileInput
}

func (b *builder) preflight(ctx context.Context) (*preflight, error) {
	s := &b.cfg.Spec
	if err := b.cfg.CheckFiles(); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, &StageError{Stage: "inputs", Field: ce.Path, Err: errors.New(ce.Msg)}
		}
		return nil, &StageError{Stage: "inputs", Err: err}
	}
	p := &preflight{firmware: map[int]*measure.OVMF{}, fwSHA256: map[int]string{}, keySHA256s: map[string]string{}}
	fail := func(field, input string, err error) (*preflight, error) {
		return nil, &StageError{Stage: "inputs", Field: field, Input: input, Err: err}
	}
	switch {
	case s.Initrd.Init != nil:
		sum, size, err := fileDigest(ctx, s.Initrd.Init.Resolved)
		if err != nil {
			return fail("spec.initrd.init", s.Initrd.Init.Written, err)
		}
		p.initPath = s.Initrd.Init.Resolved
		p.initInput = FileInput{Field: "spec.initrd.init", Path: s.Initrd.Init.Written, Kind: "file", SHA256: sum, Size: size}
	case b.opts.GuestInit.Data != nil:
		sum := sha256.Sum256(b.opts.GuestInit.Data)
		p.initData = b.opts.GuestInit.Data
		p.initInput = FileInput{Field: "spec.initrd.init", Kind: "builtin", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b.opts.GuestInit.Data))}
	case b.opts.GuestInit.Path != "":
		sum, size, err := fileDigest(ctx, b.opts.GuestInit.Path)
		if err != nil {
			return fail("spec.initrd.init", "the default guest init", err)
		}
		p.initPath = b.opts.GuestInit.Path
		p.initInput = FileInput{Field: "spec.initrd.init", Kind: "builtin", SHA256: sum, Size: size}
	default:
		return fail("spec.initrd.init", "", errors.New("not given, and no default guest init (BuildOptions.GuestInit; the CLI takes the guest-init next to its executable, as 'make build' puts it)"))
	}
	for i, t := range s.Measurements.Targets {
		if t.Platform != PlatformQEMUOVMF {
			continue
		}
		field := fmt.Sprintf("spec.measurements.targets[%d].firmware", i)
		fw, err := measure.ReadOVMF(t.Firmware.Resolved)
		if err != nil {
			return fail(field, t.Firmware.Written, err)
		}
		if !fw.HasSEVMetadata() || !fw.HasSection(measure.SectionSNPKernelHashes) {
			return fail(field, t.Firmware.Written, errors.New("has no SNP_KERNEL_HASHES section: QEMU cannot measure a direct kernel boot with it (edk2's AmdSevX64 build has one)"))
		}
		sum := sha256.Sum256(fw.Data())
		p.firmware[i] = fw
		p.fwSHA256[i] = hex.EncodeToString(sum[:])
		p.fwInputs = append(p.fwInputs, FileInput{Field: field, Path: t.Firmware.Written, Kind: "file", SHA256: p.fwSHA256[i], Size: int64(len(fw.Data()))})
	}
	if id := s.IDBlock; id != nil && id.Key != nil {
		var err error
		if p.idKey, p.idKeyIn, err = readKey(id.Key, "spec.idBlock.key", p.keySHA256s); err != nil {
			return fail("spec.idBlock.key", id.Key.Written, err)
		}
		if id.AuthorKey != nil {
			if p.authorKey, p.authorIn, err = readKey(id.AuthorKey, "spec.idBlock.authorKey", p.keySHA256s); err != nil {
				return fail("spec.idBlock.authorKey", id.AuthorKey.Written, err)
			}
		}
	}
	if r := s.Runtime; r != nil && r.KataConfigTemplate != nil {
		const field = "spec.runtime.kataConfigTemplate"
		data, err := readSmallFile(r.KataConfigTemplate.Resolved, maxKataTemplate)
		if err != nil {
			return fail(field, r.KataConfigTemplate.Written, trimOutputPrefix(err))
		}
		sum := sha256.Sum256(data)
		p.kataTemplate = data
		p.kataInput = &FileInput{Field: field, Path: r.KataConfigTemplate.Written, Kind: "file", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	}
	b.pre = p
	if err := b.checkPayload(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// maxKataTemplate bounds spec.runtime.kataConfigTemplate (Kata's own
// configurations are about 30 KiB).
const maxKataTemplate = 1 << 20

// readSmallFile reads a file of at most max bytes.
func readSmallFile(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return data, nil
}

// readKey reads an ID block key (P-384, PEM).
func readKey(p *Path, field string, sums map[string]string) (*ecdsa.PrivateKey, *KeyInput, error) {
	data, err := os.ReadFile(p.Resolved)
	if err != nil {
		return nil, nil, err
	}
	k, err := snp.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, nil, err
	}
	pub, err := snp.NewPublicKey(&k.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(data)
	sums[field] = hex.EncodeToString(sum[:])
	return k, &KeyInput{Field: field, Path: p.Written, PublicKeyDigest: pub.Digest()}, nil
}
