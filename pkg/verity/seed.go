package verity

import (
	"crypto/hmac"
	"crypto/sha256"
)

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// SaltFromSeed derives a 32-byte salt from a seed: HMAC-SHA256 with the
// seed as key of the string "verity-salt".
func SaltFromSeed(seed []byte) []byte { return hmacSHA256(seed, "verity-salt") }

// UUIDFromSeed derives a superblock UUID from a seed: the first 16 bytes of
// HMAC-SHA256(key=seed, "verity-uuid") with the RFC 4122 version 4 and
// variant bits set (as systemd-repart derives its UUIDs).
func UUIDFromSeed(seed []byte) [16]byte {
	var u [16]byte
	copy(u[:], hmacSHA256(seed, "verity-uuid"))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
