package snp

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

// TestPolicyAgreesWithGoSevGuest pins that Validate accepts exactly the
// policies go-sev-guest's abi.ParseSnpPolicy accepts (Contrast's
// coordinator reads policies with it), and that Flags names the bits it
// decodes.
func TestPolicyAgreesWithGoSevGuest(t *testing.T) {
	policies := []uint64{0, 0x30000, 0x20000, 0x1f0000, 0x3ff0000, 0x7ff0000, 1 << 63}
	for bit := range 64 {
		policies = append(policies, 1<<bit, 1<<bit|uint64(PolicyReserved1))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		policies = append(policies, r.Uint64()&(1<<28-1), r.Uint64()&(1<<28-1)|uint64(PolicyReserved1))
	}
	for _, v := range policies {
		ours := GuestPolicy(v).Validate()
		decoded, theirs := abi.ParseSnpPolicy(v)
		if (ours == nil) != (theirs == nil) {
			t.Fatalf("policy %#x: Validate: %v; abi.ParseSnpPolicy: %v", v, ours, theirs)
		}
		if ours != nil {
			continue
		}
		want := map[string]bool{
			"SMT": decoded.SMT, "RESERVED_1": true, "MIGRATE_MA": decoded.MigrateMA, "DEBUG": decoded.Debug,
			"SINGLE_SOCKET": decoded.SingleSocket, "CXL_ALLOW": decoded.CXLAllowed, "MEM_AES_256_XTS": decoded.MemAES256XTS,
			"RAPL_DIS": decoded.RAPLDis, "CIPHERTEXT_HIDING": decoded.CipherTextHidingDRAM, "PAGE_SWAP_DISABLE": decoded.PageSwapDisable,
		}
		got := map[string]bool{}
		for _, f := range GuestPolicy(v).Flags() {
			got[f] = true
		}
		for name, set := range want {
			if got[name] != set {
				t.Fatalf("policy %#x: Flags has %s = %v, go-sev-guest decodes %v", v, name, got[name], set)
			}
		}
		if GuestPolicy(v).ABIMajor() != decoded.ABIMajor || GuestPolicy(v).ABIMinor() != decoded.ABIMinor {
			t.Fatalf("policy %#x: ABI version differs from go-sev-guest's", v)
		}
	}
}
