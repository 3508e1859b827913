package anchor

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

func hash(c byte) string { return strings.Repeat(string(c), 64) }

func TestRead(t *testing.T) {
	at := time.Date(2026, 12, 2, 16, 5, 31, 123456000, time.UTC)
	h := func(seq int64, c byte) core.AuditHead { return core.AuditHead{Seq: seq, Hash: hash(c)} }
	for _, tc := range []struct {
		name string
		file string
		want []core.AuditHead
		bad  int
	}{
		{"empty", "", nil, 0},
		{"what GET /api/v1/audit/head answers, appended by curl",
			`{"seq":3,"hash":"` + hash('a') + `","at":"2026-12-02T16:05:31.123456Z"}` + "\n", []core.AuditHead{{Seq: 3, Hash: hash('a'), At: at}}, 0},
		{"the empty chain's, then rows", `{"seq":0,"hash":"` + core.GenesisHash + `"}` + "\n" + `{"seq":2,"hash":"` + hash('b') + `"}`,
			[]core.AuditHead{{Hash: core.GenesisHash}, h(2, 'b')}, 0},
		{"an idle chain anchored again is one anchor", strings.Repeat(`{"seq":2,"hash":"`+hash('b')+`"}`+"\n", 3) + `{"seq":4,"hash":"` + hash('c') + `"}` + "\n",
			[]core.AuditHead{h(2, 'b'), h(4, 'c')}, 0},
		{"a torn line, a blank one, then more", `{"seq":2,"hash":"` + hash('b') + `"}` + "\n" + `{"seq":3,"ha` + "\n\n" + `{"seq":4,"hash":"` + hash('c') + `"}` + "\n",
			[]core.AuditHead{h(2, 'b'), h(4, 'c')}, 1},
		{"not anchors", strings.Join([]string{
			`{"hash":"` + hash('a') + `"}`,          // no seq
			`{"seq":-1,"hash":"` + hash('a') + `"}`, // negative
			`{"seq":1,"hash":"abc"}`,                // short hash
			`{"seq":0,"hash":"` + hash('a') + `"}`,  // row 0 is only the empty chain's
			`{"seq":1,"hash":"` + hash('a') + `","at":"yesterday"}`,
			`[1,2]`,
		}, "\n"), nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, bad, err := Read(strings.NewReader(tc.file))
			if err != nil || bad != tc.bad || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v bad %d err %v; want %+v bad %d", got, bad, err, tc.want, tc.bad)
			}
		})
	}
	if _, _, err := Read(strings.NewReader(strings.Repeat("x", maxLine+1))); err == nil {
		t.Error("a line past maxLine read")
	}
}

// TestAppend: each anchor is a line of its own, read back as written,
// even after a line a crash left torn.
func TestAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heads.jsonl")
	first := core.AuditHead{Seq: 7, Hash: hash('a'), At: time.Date(2026, 12, 2, 16, 5, 31, 0, time.FixedZone("x", 3600))}
	if err := Append(path, first); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":8,"hash":"bb`); err != nil { // a crash mid-write
		t.Fatal(err)
	}
	f.Close()
	second := core.AuditHead{Seq: 9, Hash: hash('c')}
	if err := Append(path, second); err != nil {
		t.Fatal(err)
	}
	heads, bad, err := ReadFile(path)
	first.At = first.At.UTC()
	if err != nil || bad != 1 || !reflect.DeepEqual(heads, []core.AuditHead{first, second}) {
		t.Fatalf("read back %+v bad %d err %v", heads, bad, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	if err := Append(filepath.Join(t.TempDir(), "no-such-dir", "heads.jsonl"), first); err == nil {
		t.Error("append into a missing directory succeeded")
	}
}

// TestPost: the head goes as JSON with the configured headers; a refusal
// is an error naming the host, never the URL's path.
func TestPost(t *testing.T) {
	var got struct {
		auth, ctype string
		body        core.AuditHead
	}
	status := http.StatusCreated
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.auth, got.ctype = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got.body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	head := core.AuditHead{Seq: 3, Hash: hash('d')}
	target := srv.URL + "/s3cr3t-path"
	if err := Post(context.Background(), srv.Client(), target, map[string]string{"Authorization": "Bearer t"}, head); err != nil {
		t.Fatal(err)
	}
	if got.auth != "Bearer t" || got.ctype != "application/json" || got.body != head {
		t.Fatalf("received %+v", got)
	}
	status = http.StatusInternalServerError
	err := Post(context.Background(), srv.Client(), target, nil, head)
	if err == nil || !strings.Contains(err.Error(), "status 500") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("refused: %v", err)
	}
	srv.Close()
	if err := Post(context.Background(), srv.Client(), target, nil, head); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("unreachable: %v", err)
	}
}

// TestTail: each Read returns what was appended since the last, a line
// being written only once it is ended, and a file replaced from its start.
func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heads.jsonl")
	write := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	line := func(seq int64, c byte) string { return string(Encode(core.AuditHead{Seq: seq, Hash: hash(c)})) }
	tail := NewTail(path)
	read := func(want []int64, wantBad int, wantReplaced bool) {
		t.Helper()
		var seqs []int64
		bad, replaced, err := tail.Read(func(h core.AuditHead) { seqs = append(seqs, h.Seq) })
		if err != nil || bad != wantBad || replaced != wantReplaced || !reflect.DeepEqual(seqs, want) {
			t.Fatalf("read %v bad %d replaced %v err %v; want %v bad %d replaced %v", seqs, bad, replaced, err, want, wantBad, wantReplaced)
		}
	}
	if _, _, err := tail.Read(func(core.AuditHead) {}); err == nil {
		t.Fatal("a missing file read")
	}
	write(line(1, 'a') + line(2, 'b'))
	read([]int64{1, 2}, 0, false)
	read(nil, 0, false)
	l3 := line(3, 'c')
	write(l3[:20]) // being written
	read(nil, 0, false)
	write(l3[20:] + "garbage\n")
	read([]int64{3}, 1, false)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(line(1, 'e'))
	read([]int64{1}, 0, true)
}
