package groupcommit

import (
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// textArray is a PostgreSQL text[] parameter. Its Value is built in one
// allocation of the exact size (pq.StringArray grows its buffer element by
// element: on the hot path, kilobytes of decision documents per row), and
// is []byte, which lib/pq sends for a text[] parameter without copying.
// On a connection with binary_parameters (the committer's own, onestatement.go)
// lib/pq takes BinaryValue instead: the committer renders its arrays
// itself (binaryArgs), and BinaryValue keeps any other textArray sent on
// that pool correct (Value's literal would reach array_recv as binary).
type textArray []string

// textOID is the type oid of text, the element type of a text[].
const textOID = 25

// BinaryValue renders the array in PostgreSQL's binary format (array_recv):
// the number of dimensions, a has-nulls flag, the element type, the
// dimension's length and lower bound, then each element as its length and
// bytes. No escaping on either side; PostgreSQL still checks each element
// is valid in the database's encoding.
func (a textArray) BinaryValue() ([]byte, error) {
	n, err := a.binarySize()
	if err != nil {
		return nil, err
	}
	return a.appendBinary(make([]byte, 0, n)), nil
}

// binarySize is the length of a's binary rendering.
func (a textArray) binarySize() (int, error) {
	n, err := a.elementsSize()
	return arrayHeaderSize(len(a)) + n, err
}

// elementsSize is the length of a's elements in the binary format (each
// its length and bytes), past the header.
func (a textArray) elementsSize() (int, error) {
	n := 0
	for _, s := range a {
		if len(s) > math.MaxInt32 {
			return 0, fmt.Errorf("text[] element of %d bytes is too long", len(s))
		}
		n += 4 + len(s)
	}
	return n, nil
}

// appendBinary appends a's binary rendering (BinaryValue) to b.
func (a textArray) appendBinary(b []byte) []byte {
	return a.appendElements(appendArrayHeader(b, textOID, len(a)))
}

// appendElements appends a's elements, each as its length and bytes.
func (a textArray) appendElements(b []byte) []byte {
	for _, s := range a {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// arrayHeaderSize is the length of a one-dimensional array's binary
// header for n elements (appendArrayHeader).
func arrayHeaderSize(n int) int {
	if n == 0 {
		return 12
	}
	return 20
}

// appendArrayHeader appends the binary header of a one-dimensional array
// of n elements of type oid: the number of dimensions, a has-nulls flag,
// the element type, then the dimension's length and lower bound ('{}',
// no dimension, when n is 0).
func appendArrayHeader(b []byte, oid uint32, n int) []byte {
	if n == 0 {
		b = binary.BigEndian.AppendUint32(b, 0)
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	b = binary.BigEndian.AppendUint32(b, 0) // no nulls
	b = binary.BigEndian.AppendUint32(b, oid)
	if n > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = binary.BigEndian.AppendUint32(b, 1) // lower bound
	}
	return b
}

// Value renders the array literal {"a","b"} with " and \ escaped.
func (a textArray) Value() (driver.Value, error) {
	n := 2 + len(a)*3
	for _, s := range a {
		n += len(s) + strings.Count(s, `"`) + strings.Count(s, `\`)
	}
	b := make([]byte, n)
	w := 0
	b[w] = '{'
	w++
	for i, s := range a {
		if i > 0 {
			b[w] = ','
			w++
		}
		b[w] = '"'
		w++
		// A byte loop into the sized buffer: JSON documents have a quote
		// every few bytes, too often for strings.IndexAny to pay off.
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '"' || c == '\\' {
				b[w] = '\\'
				w++
			}
			b[w] = c
			w++
		}
		b[w] = '"'
		w++
	}
	b[w] = '}'
	return b[:w+1], nil
}
