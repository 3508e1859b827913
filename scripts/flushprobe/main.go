// Command flushprobe measures the disk's flush latency beside a load run
// (scripts/paths.sh): every -every it appends 8 KB to a file in -dir and
// waits for fdatasync, for -d, then prints how long the flushes took.
//
// A durable commit waits for such a flush (PostgreSQL's WAL fdatasync, a
// SQLite commit), so a flush that stalls stalls every commit of the box
// at once, whatever the program committing. Printed beside a phase's
// latencies, it tells a tail that the disk made from one the program
// made. Its own load is small: 100 flushes of 8 KB a second by default.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to probe (the database's)")
	every := flag.Duration("every", 10*time.Millisecond, "time between flushes")
	d := flag.Duration("d", 10*time.Second, "how long to probe")
	slow := flag.Duration("slow", 50*time.Millisecond, "flushes at least this long are listed with their time")
	flag.Parse()
	if err := run(*dir, *every, *d, *slow); err != nil {
		fmt.Fprintln(os.Stderr, "flushprobe:", err)
		os.Exit(1)
	}
}

func run(dir string, every, d, slow time.Duration) error {
	f, err := os.CreateTemp(dir, "flushprobe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 8192)
	var lat []time.Duration
	var stalls []string
	tick := time.NewTicker(every)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := f.Sync(); err != nil { // fsync; on an appended file fdatasync writes the same
			return err
		}
		took := time.Since(t)
		lat = append(lat, took)
		if took >= slow {
			stalls = append(stalls, fmt.Sprintf("%s %.0fms", t.UTC().Format("15:04:05.000"), took.Seconds()*1000))
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("no flush in %v", d)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[int(p*float64(len(lat)-1))].Seconds() * 1000 }
	fmt.Printf("flushes %d in %s: p50 %.2f ms p99 %.2f ms max %.1f ms; %d of at least %v%s\n",
		len(lat), filepath.Base(dir), q(0.5), q(0.99), q(1), len(stalls), slow, list(stalls))
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%v)", s)
}
