// Package rebase pages a source's records "updated since T, oldest
// first" so that a record updated while the pages are read does not make
// the reader skip another one.
//
// Paged by a plain offset, such a listing shifts under the reader: a
// record on a page already read that is updated meanwhile moves to the
// end, every later record moves up one place, and the record at the next
// page's boundary is never read. The pollers keep the newest record
// stored as their watermark, so that record would be lost for good. A
// Cursor instead asks each page again from the newest update time read so
// far (to the source's precision), at the place after the last record it
// read of that instant less an overlap, and skips the records it has
// already read (the same key at the same update time). When more records
// of the instant moved on than the overlap covers, the first record of
// the next page is one not read before: the Cursor then reads the
// instant again from its start.
package rebase

import "time"

// Overlap is how many records of the instant a page is asked from are
// read again, so that as many of them may move on between two pages
// without the instant being read again from its start; at most a quarter
// of a page, so every full page brings new records.
const Overlap = 20

// Cursor is one listing's position. The zero value is not usable: see
// New.
type Cursor struct {
	since     time.Time
	precision time.Duration
	overlap   int
	offset    int
	end       int // the place after the last record read, in its instant
	// seen holds the records read at since or later: key, update time.
	seen map[item]struct{}
}

type item struct {
	key string
	at  time.Time
}

// New starts a listing at since, whose times the source compares to
// precision (a second for ServiceNow's sys_updated_on, a minute for a
// JQL date), read in pages of pageSize records.
func New(since time.Time, precision time.Duration, pageSize int) *Cursor {
	return &Cursor{since: since.Truncate(precision), precision: precision, overlap: min(Overlap, pageSize/4),
		seen: map[item]struct{}{}}
}

// Next is what to ask the next page with: the records updated at or
// after since, from offset.
func (c *Cursor) Next() (since time.Time, offset int) {
	return c.since, c.offset
}

// Fresh reports whether Next starts a new listing (offset 0), where a
// source paged by tokens must start again without one.
func (c *Cursor) Fresh() bool { return c.offset == 0 }

// Read takes a page asked with Next, given as each record's key and
// update time in the order the source returned them, and reports which
// of them are new: the rest were read before.
//
// The next page is asked from the newest instant on this page, at the
// place after this page's last record less the overlap. A page asked
// from inside an instant whose first record is new shows that more than
// the overlap moved on since the page before: records may have been
// passed over, so the next page reads the instant again from its start.
func (c *Cursor) Read(keys []string, times []time.Time) []bool {
	return c.read(keys, times, c.offset, c.offset > 0, len(keys))
}

// ReadListed is Read for a page the source thinned after cutting it: it
// listed listed records (the page's size, when more follow) and showed
// only keys (ServiceNow leaves out the rows the caller's ACLs hide after
// applying sysparm_limit, so a page may come back short, or empty, with
// more to follow). The hidden records still hold places in the listing:
// the next page is asked after all listed ones when the page shows
// nothing newer than the instant it was asked from, so a page every
// record of which is hidden still moves the reader on.
func (c *Cursor) ReadListed(keys []string, times []time.Time, listed int) []bool {
	return c.read(keys, times, c.offset, c.offset > 0, max(listed, len(keys)))
}

// ReadContinued takes a page a source paged by token gave after the
// previous one (not asked at Next's offset: Jira Cloud, whose JQL cannot
// start inside a minute): it starts right after the previous page's last
// record, so its first record is new by design and says nothing of a
// shift.
func (c *Cursor) ReadContinued(keys []string, times []time.Time) []bool {
	return c.read(keys, times, c.end, false, len(keys))
}

// read is Read for a page that began at place start of the instant it
// was asked from and listed listed records, keys among them; check says
// whether a new first record means a shift.
func (c *Cursor) read(keys []string, times []time.Time, start int, check bool, listed int) []bool {
	fresh := make([]bool, len(keys))
	for i, k := range keys {
		it := item{k, times[i]}
		if _, ok := c.seen[it]; !ok {
			c.seen[it] = struct{}{}
			fresh[i] = true
		}
	}
	hidden := listed - len(keys)
	if len(keys) == 0 {
		if hidden > 0 {
			c.end = start + listed
			c.offset = max(0, c.end-c.overlap)
		}
		return fresh
	}
	// A new first record shows a shift only when it held one of the places
	// the page read again. With as many hidden records as the overlap it
	// may lie past them; taken for a shift, the instant would be read
	// again from its start at every such page, and a poll's pages could
	// run out inside one large instant.
	shifted := check && fresh[0] && hidden < c.overlap
	at := 0 // records of this page at its newest instant: its place in that instant
	last := times[len(times)-1].Truncate(c.precision)
	for _, t := range times {
		if t.Truncate(c.precision).Equal(last) {
			at++
		}
	}
	if last.After(c.since) {
		c.since = last
		for it := range c.seen {
			if it.at.Truncate(c.precision).Before(last) {
				delete(c.seen, it)
			}
		}
	} else if hidden > 0 {
		// The page shows nothing past the instant it was asked from: its
		// places in the listing from there are all it listed, hidden or
		// not.
		at = start + listed
	} else {
		at += start
	}
	c.end = at
	c.offset = max(0, at-c.overlap)
	if shifted {
		c.offset = 0
	}
	return fresh
}
