package rebase

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// source is a listing ordered by update time, then key, with a
// precision of a second, as the ITSM APIs serve it.
type source struct {
	at map[string]time.Time
}

func (s *source) page(since time.Time, offset, size int) ([]string, []time.Time) {
	var keys []string
	for k, t := range s.at {
		if !t.Before(since) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := s.at[keys[i]], s.at[keys[j]]
		if !a.Equal(b) {
			return a.Before(b)
		}
		return keys[i] < keys[j]
	})
	if offset > len(keys) {
		offset = len(keys)
	}
	keys = keys[offset:min(len(keys), offset+size)]
	times := make([]time.Time, len(keys))
	for i, k := range keys {
		times[i] = s.at[k]
	}
	return keys, times
}

// read lists src from since in pages of size, calling between(n) after
// the n-th page, and returns every key read and how many pages it took.
func read(src *source, since time.Time, size int, between func(int)) (map[string]int, int) {
	got := map[string]int{}
	c := New(since, time.Second, size)
	for n := 1; n <= 1000; n++ {
		s, off := c.Next()
		keys, times := src.page(s, off, size)
		for i, fresh := range c.Read(keys, times) {
			if fresh {
				got[keys[i]]++
			}
		}
		if len(keys) < size {
			return got, n
		}
		between(n)
	}
	return got, 1000
}

func TestCursorReadsEveryRecordWhileTheyMove(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		records int
		// at gives record i its update time.
		at func(i int) time.Time
		// moved is how many of the records read so far are updated
		// after each page.
		moved int
	}{
		{"one a second, none moves", 450, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }, 0},
		{"one a second, the oldest read moves", 450, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }, 1},
		{"ten a second, three move", 450, func(i int) time.Time { return t0.Add(time.Duration(i/10) * time.Second) }, 3},
		{"all in one second, none moves", 450, func(int) time.Time { return t0 }, 0},
		{"all in one second, five move", 450, func(int) time.Time { return t0 }, 5},
		{"all in one second, as many as the overlap move", 450, func(int) time.Time { return t0 }, Overlap},
		{"all in one second, more than the overlap move", 450, func(int) time.Time { return t0 }, Overlap + 10},
		{"ten a second, more than the overlap move", 450, func(i int) time.Time { return t0.Add(time.Duration(i/10) * time.Second) }, Overlap + 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &source{at: map[string]time.Time{}}
			for i := range tc.records {
				src.at[fmt.Sprintf("r%04d", i)] = tc.at(i)
			}
			later := t0.Add(time.Hour)
			var read1 []string // the records read, oldest first, to move
			got, pages := read(src, t0, 100, func(n int) {
				// Move the records of the page just read that come first
				// in its instant: those whose moving shifts the rest.
				read1 = read1[:0]
				for k := range src.at {
					if src.at[k].Before(later) {
						read1 = append(read1, k)
					}
				}
				sort.Strings(read1)
				for _, k := range read1[:min(tc.moved, len(read1))] {
					later = later.Add(time.Second)
					src.at[k] = later
				}
			})
			for i := range tc.records {
				if k := fmt.Sprintf("r%04d", i); got[k] == 0 {
					t.Errorf("%s never read (%d pages)", k, pages)
				}
			}
			if pages > 20 {
				t.Errorf("%d pages for %d records in pages of 100", pages, tc.records)
			}
		})
	}
}

// TestPlainOffsetSkips shows the fault the cursor exists for: the same
// listing paged by a plain offset loses a record when one moves.
func TestPlainOffsetSkips(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	src := &source{at: map[string]time.Time{}}
	for i := range 250 {
		src.at[fmt.Sprintf("r%04d", i)] = t0.Add(time.Duration(i) * time.Second)
	}
	got := map[string]bool{}
	for off := 0; ; off += 100 {
		keys, _ := src.page(t0, off, 100)
		for _, k := range keys {
			got[k] = true
		}
		if len(keys) < 100 {
			break
		}
		src.at["r0000"] = t0.Add(time.Hour + time.Duration(off)*time.Second)
	}
	if len(got) == 250 {
		t.Fatal("a plain offset read every record: the test no longer shows the fault")
	}
}

func TestCursorMovesOnPastRecordsReadBefore(t *testing.T) {
	// A full page of records already read (a server answering the same
	// page whatever it is asked) must not hold the reader on one page.
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	c := New(t0, time.Second, 4)
	keys := []string{"a", "b", "c", "d"}
	times := []time.Time{t0, t0, t0, t0}
	var offsets []int
	for range 3 {
		c.Read(keys, times)
		_, off := c.Next()
		offsets = append(offsets, off)
	}
	if offsets[0] >= offsets[1] || offsets[1] >= offsets[2] {
		t.Fatalf("offsets %v: a page with nothing new must move the offset on", offsets)
	}
}

// TestCursorReadsPastHiddenRecords: a source that hides records after
// cutting the page (ServiceNow's ACLs) gives short pages, and empty ones,
// with more to follow. Read with what each page listed, every record it
// shows is read, through runs of hidden records longer than a page, in
// one instant or many, and while records move, in as many pages as the
// listing's places take (hidden records are no sign of a shift).
func TestCursorReadsPastHiddenRecords(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		at     func(i int) time.Time
		hidden func(i int) bool
		moved  int
	}{
		{"one a second, a run of 250 hidden", func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) },
			func(i int) bool { return i >= 50 && i < 300 }, 0},
		{"all in one second, a run of 250 hidden", func(int) time.Time { return t0 }, func(i int) bool { return i >= 50 && i < 300 }, 0},
		{"all in one second, every other hidden", func(int) time.Time { return t0 }, func(i int) bool { return i%2 == 1 }, 0},
		{"all in one second, runs of 30 hidden at the pages' ends", func(int) time.Time { return t0 },
			func(i int) bool { return i%100 >= 70 }, 0},
		{"ten a second, every third hidden, three move", func(i int) time.Time { return t0.Add(time.Duration(i/10) * time.Second) },
			func(i int) bool { return i%3 == 0 }, 3},
		{"all in one second, a run of 250 hidden, five move", func(int) time.Time { return t0 }, func(i int) bool { return i >= 120 && i < 370 }, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const records, size = 450, 100
			src := &source{at: map[string]time.Time{}}
			hide := map[string]bool{}
			for i := range records {
				k := fmt.Sprintf("r%04d", i)
				src.at[k], hide[k] = tc.at(i), tc.hidden(i)
			}
			later := t0.Add(time.Hour)
			got := map[string]int{}
			c := New(t0, time.Second, size)
			pages := 0
			for ; pages < 100; pages++ {
				since, off := c.Next()
				listed, times := src.page(since, off, size)
				var keys []string
				var shown []time.Time
				for i, k := range listed {
					if !hide[k] {
						keys, shown = append(keys, k), append(shown, times[i])
					}
				}
				n := len(keys)
				if len(listed) == size { // more may follow: the page was cut full
					n = size
				}
				for i, fresh := range c.ReadListed(keys, shown, n) {
					if fresh {
						got[keys[i]]++
					}
				}
				if len(listed) < size {
					break
				}
				for k := range tc.moved { // the oldest shown records are updated
					key := fmt.Sprintf("r%04d", k)
					if src.at[key].Before(t0.Add(time.Hour)) {
						later = later.Add(time.Second)
						src.at[key] = later
					}
				}
			}
			for i := range records {
				if k := fmt.Sprintf("r%04d", i); !hide[k] && got[k] == 0 {
					t.Errorf("%s never read (%d pages)", k, pages)
				}
			}
			// 450 places, 80 new a page: hidden records taken for a shift
			// would have the instant read again.
			if pages > 6 {
				t.Errorf("%d pages for %d records in pages of %d", pages, records, size)
			}
		})
	}
}
