package snp

import (
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
)

// GuestPolicy is the 64-bit SEV-SNP guest policy given at SNP_LAUNCH_START
// (SEV-SNP firmware ABI, "GUEST_POLICY").
type GuestPolicy uint64

// Guest policy bits.
const (
	PolicySMT          GuestPolicy = 1 << 16 // SMT allowed
	PolicyReserved1    GuestPolicy = 1 << 17 // must be one
	PolicyMigrateMA    GuestPolicy = 1 << 18 // migration agent allowed
	PolicyDebug        GuestPolicy = 1 << 19 // debugging allowed
	PolicySingleSocket GuestPolicy = 1 << 20 // single socket only
	PolicyCXLAllow     GuestPolicy = 1 << 21 // CXL may be populated with devices or memory
	PolicyMemAES256XTS GuestPolicy = 1 << 22 // require AES-256-XTS memory encryption
	PolicyRAPLDis      GuestPolicy = 1 << 23 // require RAPL disabled
	PolicyCipherText   GuestPolicy = 1 << 24 // require ciphertext hiding
	PolicyPageSwapDis  GuestPolicy = 1 << 25 // SNP_PAGE_MOVE, SNP_SWAP_OUT and SNP_SWAP_IN disabled
)

// ABIMinor is the minimum firmware ABI minor version the guest requires.
func (p GuestPolicy) ABIMinor() uint8 { return uint8(p) }

// ABIMajor is the minimum firmware ABI major version the guest requires.
func (p GuestPolicy) ABIMajor() uint8 { return uint8(p >> 8) }

// Validate reports a policy the firmware would refuse: bit 17 must be set
// and bits above 25 are reserved. It accepts exactly what go-sev-guest's
// abi.ParseSnpPolicy accepts (TestPolicyAgreesWithGoSevGuest), which is
// how Contrast's coordinator reads the policy.
func (p GuestPolicy) Validate() error {
	if p&PolicyReserved1 == 0 {
		return fmt.Errorf("snp: guest policy %#x: bit 17 (reserved, must be one) is clear", uint64(p))
	}
	if p>>26 != 0 {
		return fmt.Errorf("snp: guest policy %#x: reserved bits above 25 are set", uint64(p))
	}
	return nil
}

var policyBitNames = []struct {
	bit  GuestPolicy
	name string
}{
	{PolicySMT, "SMT"},
	{PolicyReserved1, "RESERVED_1"},
	{PolicyMigrateMA, "MIGRATE_MA"},
	{PolicyDebug, "DEBUG"},
	{PolicySingleSocket, "SINGLE_SOCKET"},
	{PolicyCXLAllow, "CXL_ALLOW"},
	{PolicyMemAES256XTS, "MEM_AES_256_XTS"},
	{PolicyRAPLDis, "RAPL_DIS"},
	{PolicyCipherText, "CIPHERTEXT_HIDING"},
	{PolicyPageSwapDis, "PAGE_SWAP_DISABLE"},
}

// Flags lists the names of the set policy bits, in bit order.
func (p GuestPolicy) Flags() []string {
	var names []string
	for _, b := range policyBitNames {
		if p&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	return names
}

// String decodes the policy, e.g. "0x3001f (ABI >= 0.31, SMT RESERVED_1)".
func (p GuestPolicy) String() string {
	return fmt.Sprintf("%#x (ABI >= %d.%d, %s)", uint64(p), p.ABIMajor(), p.ABIMinor(), strings.Join(p.Flags(), " "))
}

// MarshalText writes the policy as a hex number ("0x3001f"), the JSON form
// of hex numbers (pkg/hexnum).
func (p GuestPolicy) MarshalText() ([]byte, error) { return hexnum.Uint64(p).MarshalText() }

// UnmarshalText reads a policy written as 0x-prefixed hex or decimal.
func (p *GuestPolicy) UnmarshalText(b []byte) error {
	v, err := hexnum.Parse(string(b))
	if err != nil {
		return fmt.Errorf("snp: guest policy: %w", err)
	}
	*p = GuestPolicy(v)
	return nil
}
