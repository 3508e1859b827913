package inbox

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// TestPGArrayBinaryValue holds pgArray to array_recv's format, whether the
// room was reserved ahead or not, and across repeated renderings.
func TestPGArrayBinaryValue(t *testing.T) {
	want := func(oid uint32, elems ...[]byte) []byte {
		var b []byte
		if len(elems) == 0 {
			b = binary.BigEndian.AppendUint32(b, 0)
			b = binary.BigEndian.AppendUint32(b, 0)
			return binary.BigEndian.AppendUint32(b, oid)
		}
		for _, v := range []uint32{1, 0, oid, uint32(len(elems)), 1} {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		for _, e := range elems {
			b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
			b = append(b, e...)
		}
		return b
	}
	at := time.Date(2000, 1, 1, 0, 0, 1, 5000, time.UTC)
	us := binary.BigEndian.AppendUint64(nil, 1_000_005)
	tests := []struct {
		name  string
		build func(a *pgArray)
		want  []byte
	}{
		{"empty", func(*pgArray) {}, want(oidText)},
		{"strings, no reserve", func(a *pgArray) { a.addString("a"); a.addString(""); a.addString("héllo") },
			want(oidText, []byte("a"), nil, []byte("héllo"))},
		{"strings, reserved", func(a *pgArray) { a.reserve(2, 4); a.addString("ab"); a.addString("cd") },
			want(oidText, []byte("ab"), []byte("cd"))},
		{"reserved too little", func(a *pgArray) { a.reserve(1, 1); a.addString("abc"); a.addString("defgh") },
			want(oidText, []byte("abc"), []byte("defgh"))},
		{"bytes", func(a *pgArray) { a.oid = oidBytea; a.add([]byte{0, 1, 2}) }, want(oidBytea, []byte{0, 1, 2})},
		{"time", func(a *pgArray) { a.oid = oidTimestamptz; a.reserve(1, 8); a.addTime(at) }, want(oidTimestamptz, us)},
		{"a kept buffer, stale bytes in it", func(a *pgArray) {
			a.data = bytes.Repeat([]byte{0xff}, 64)[:0]
			a.reserve(2, 4)
			a.addString("ab")
			a.addString("cd")
		}, want(oidText, []byte("ab"), []byte("cd"))},
		{"a kept buffer too small", func(a *pgArray) {
			a.data = make([]byte, 0, 8)
			a.reserve(1, 5)
			a.addString("hello")
		}, want(oidText, []byte("hello"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &pgArray{oid: oidText}
			tt.build(a)
			for range 2 {
				got, err := a.BinaryValue()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("BinaryValue = %x, want %x", got, tt.want)
				}
			}
		})
	}
}
