package service

import (
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// strandMargin keeps stranded work (an inbox event's claim, a CI gate
// request's outcome) from being handed back this close to its claim's
// end, when another worker or replica may claim it at any moment.
const strandMargin = time.Second

// stranded holds, by id, work an outage kept from the database while this
// process held its claim: without it, the work would wait for the claim's
// lease to end after the database returns. flush retries it as soon as
// the database answers again.
type stranded[T any] struct {
	mu sync.Mutex
	m  map[string]strandedItem[T]
}

type strandedItem[T any] struct {
	v     T
	until time.Time // no later than the claim's end: past it the claim is not ours
}

func (s *stranded[T]) add(id string, v T, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]strandedItem[T]{}
	}
	s.m[id] = strandedItem[T]{v: v, until: until}
}

// flush calls save for each item whose claim has not come within
// strandMargin of its end (the others are dropped: their lease settles
// them) and returns how many save took. Items are taken out of the set
// before they are saved, so two callers never save one twice; when save
// finds the database still down, that item and those not tried go back
// into the set for the next flush. save handles its other errors itself.
func (s *stranded[T]) flush(now time.Time, save func(id string, v T) error) int {
	s.mu.Lock()
	items := s.m
	s.m = nil
	s.mu.Unlock()
	saved := 0
	for id, it := range items {
		delete(items, id)
		if !now.Add(strandMargin).Before(it.until) {
			continue
		}
		err := save(id, it.v)
		switch {
		case err == nil:
			saved++
		case core.IsStoreDown(err):
			s.add(id, it.v, it.until)
			for id, it := range items { // still down: the rest waits too
				s.add(id, it.v, it.until)
			}
			return saved
		}
	}
	return saved
}
