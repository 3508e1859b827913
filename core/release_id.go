package core

import (
	"crypto/sha1" //nolint:gosec // a name-based UUID (RFC 9562 v5), not a security hash
	"encoding/hex"
)

// releaseNamespace is the UUID namespace of release ids.
var releaseNamespace = [16]byte{0x6b, 0x1d, 0x3c, 0x0e, 0x5a, 0x77, 0x4f, 0x2b, 0x9e, 0x41, 0x0c, 0x8d, 0x2f, 0x63, 0xa4, 0x10}

// ReleaseID is the id of the release (service, version, environment): a
// name-based UUID (version 5), so every replica names a release the same
// way before it is stored, and the gate need not write it before
// evaluating.
func ReleaseID(service, version, environment string) string {
	h := sha1.New()
	h.Write(releaseNamespace[:])
	h.Write([]byte(service))
	h.Write([]byte{0})
	h.Write([]byte(version))
	h.Write([]byte{0})
	h.Write([]byte(environment))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
