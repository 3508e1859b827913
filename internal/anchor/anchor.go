// Package anchor reads and writes the audit chain's anchors: heads kept
// outside the database, each the JSON GET /api/v1/audit/head answers
// ({"seq","hash","at"}), one a line (JSON Lines). serve appends them
// (audit.anchor) and compares the chain with the newest; `tollgate audit
// verify --anchors` holds the chain to all of them. A file an operator's
// cron job wrote with curl reads the same.
package anchor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/tollgate-dev/tollgate/core"
)

// maxLine bounds one line: an anchor is about 130 bytes.
const maxLine = 4096

// line is an anchor as read: seq and hash must be present.
type line struct {
	Seq  *int64          `json:"seq"`
	Hash string          `json:"hash"`
	At   json.RawMessage `json:"at"`
}

// parse reads one line, ok false when it is not an anchor.
func parse(b []byte) (core.AuditHead, bool) {
	var l line
	if json.Unmarshal(b, &l) != nil || l.Seq == nil || *l.Seq < 0 {
		return core.AuditHead{}, false
	}
	if h, err := hex.DecodeString(l.Hash); err != nil || len(h) != 32 {
		return core.AuditHead{}, false
	}
	head := core.AuditHead{Seq: *l.Seq, Hash: l.Hash}
	if len(l.At) > 0 && json.Unmarshal(l.At, &head.At) != nil {
		return core.AuditHead{}, false
	}
	if head.Seq == 0 && head.Hash != core.GenesisHash {
		return core.AuditHead{}, false // no row is 0 but the empty chain's
	}
	return head, true
}

// Read reads the anchors of r in order. An anchor repeating the line
// before it (an idle chain anchored again) is read once. Lines that are
// not anchors (one torn by a crash mid-write, a blank one) are counted in
// bad, not returned: an anchors file grows for years, and one damaged
// line must not hide the rest.
func Read(r io.Reader) (heads []core.AuditHead, bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxLine), maxLine)
	for {
		if !sc.Scan() {
			if errors.Is(sc.Err(), bufio.ErrTooLong) {
				return nil, bad, fmt.Errorf("a line longer than %d bytes: not an anchors file", maxLine)
			}
			return heads, bad, sc.Err()
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		h, ok := parse(b)
		switch {
		case !ok:
			bad++
		case len(heads) > 0 && heads[len(heads)-1].Seq == h.Seq && heads[len(heads)-1].Hash == h.Hash:
		default:
			heads = append(heads, h)
		}
	}
}

// ReadFile reads the anchors of the file at path.
func ReadFile(path string) ([]core.AuditHead, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read anchors: %w", err)
	}
	defer f.Close()
	heads, bad, err := Read(f)
	if err != nil {
		return nil, bad, fmt.Errorf("read anchors %s: %w", path, err)
	}
	return heads, bad, nil
}

// Encode is head as one anchor line, as GET /api/v1/audit/head answers it.
func Encode(head core.AuditHead) []byte {
	head.At = head.At.UTC()
	j, _ := json.Marshal(head) // three plain fields: it cannot fail
	return append(j, '\n')
}

// Append adds head to the file at path as one line and fsyncs it before
// returning: an anchor reported written survives a crash of this host.
// The file is created (0640) when missing, and its directory fsynced so
// that its entry survives too. A last line torn by a crash is ended first,
// so the new anchor is a line of its own and the torn one stays unread.
func Append(path string, head core.AuditHead) (err error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open the anchors file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the anchors file: %w", cerr)
		}
	}()
	rec := Encode(head)
	if torn, err := endsTorn(path); err != nil {
		return err
	} else if torn {
		rec = append([]byte{'\n'}, rec...)
	}
	if _, err := f.Write(rec); err != nil {
		return fmt.Errorf("write the anchors file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync the anchors file: %w", err)
	}
	if created {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// endsTorn reports whether the file's last byte is not a newline.
func endsTorn(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("read the anchors file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return false, fmt.Errorf("read the anchors file: %w", err)
	}
	return last[0] != '\n', nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync the anchors file's directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync the anchors file's directory: %w", err)
	}
	return nil
}

// Post sends head to target as a JSON POST with headers; any 2xx is
// success. Errors name the target's host only: its path may be a
// credential.
func Post(ctx context.Context, client *http.Client, target string, headers map[string]string, head core.AuditHead) error {
	u, err := url.Parse(target)
	if err != nil {
		return errors.New("post anchor: the URL does not parse")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(Encode(head)))
	if err != nil {
		return fmt.Errorf("post anchor to %s: %w", u.Host, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the whole URL
		}
		return fmt.Errorf("post anchor to %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post anchor to %s: status %d", u.Host, resp.StatusCode)
	}
	return nil
}

// Tail reads a file's anchors as they are appended: each Read returns the
// complete lines added since the last (a line still being written is
// read the next time), so a replica comparing the chain with the newest
// anchor every few minutes does not read years of anchors each time.
type Tail struct {
	path   string
	offset int64
	info   os.FileInfo
}

// NewTail reads path from its start.
func NewTail(path string) *Tail { return &Tail{path: path} }

// Read hands fn the anchors appended since the last Read, in order (one
// at a time: the first Read of a file years old holds none of them), and
// returns how many lines were not anchors. A file replaced since (another
// file at the path, or one shorter than what was read: an operator
// starting a new anchors file) is read from its start, and replaced says
// so before fn sees its first anchor.
func (t *Tail) Read(fn func(core.AuditHead)) (bad int, replaced bool, err error) {
	f, err := os.Open(t.path)
	if err != nil {
		return 0, false, fmt.Errorf("read anchors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("read anchors: %w", err)
	}
	if t.info != nil && (!os.SameFile(t.info, st) || st.Size() < t.offset) {
		replaced, t.offset = true, 0
	}
	t.info = st
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return 0, replaced, fmt.Errorf("read anchors: %w", err)
	}
	r := bufio.NewReaderSize(io.LimitReader(f, st.Size()-t.offset), maxLine)
	for {
		b, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return bad, replaced, fmt.Errorf("read anchors %s: a line longer than %d bytes: not an anchors file", t.path, maxLine)
		case err != nil: // the end, and a line not yet ended, read next time
			return bad, replaced, nil
		}
		t.offset += int64(len(b))
		if b = bytes.TrimSpace(b); len(b) == 0 {
			continue
		}
		if h, ok := parse(b); ok {
			fn(h)
		} else {
			bad++
		}
	}
}
