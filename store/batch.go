package store

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// batchInsert is an INSERT that group commit merges across the callers of
// one group into multi-row statements: the hot path (a gate decision, its
// release row and its audit row per check) then costs one statement per
// group for the rows and one for the chain, instead of some per caller.
//
// On PostgreSQL a statement takes one text array per column and unnests
// it, so its text is the same for any number of rows; the inserts of one
// call go into one statement (data-modifying WITH clauses), prepared once
// per connection and never parsed or planned again. SQLite gets a VALUES
// list per insert.
type batchInsert struct {
	table string
	cols  []string
	// types are the columns' PostgreSQL types, for the casts from text.
	types []string
	tail  string // " ON CONFLICT … DO NOTHING", or ""
	// conflictFree rows never make a transaction that holds the audit
	// chain lock wait: group commit writes them before taking it (see
	// appender). True of new unique ids, and of rows that only other
	// conflict-free inserts write (a writer function that writes the same
	// table would break it: PostgreSQL would then detect a deadlock and
	// the group be rerun, lock first).
	conflictFree bool
	// sortKey, when >= 0, is the column rows are sorted by before they are
	// inserted, so two transactions inserting the same keys take their
	// locks in the same order (no deadlock between them).
	sortKey int
	// shape names the insert's statement (table, columns and types,
	// tail), for caching statement texts (wireText).
	shape string
}

func newBatchInsert(table string, cols, types []string, tail string) *batchInsert {
	if len(cols) != len(types) {
		panic("batchInsert: a type per column")
	}
	shape := table + "(" + strings.Join(cols, ",") + ")" + strings.Join(types, ",") + tail
	return &batchInsert{table: table, cols: cols, types: types, tail: tail, sortKey: -1, shape: shape}
}

// free marks b conflict-free, its rows sorted by column sortKey (or -1).
func (b *batchInsert) free(sortKey int) *batchInsert {
	b.conflictFree, b.sortKey = true, sortKey
	return b
}

// pgSQL is b's PostgreSQL statement with its arrays at $first… .
func (b *batchInsert) pgSQL(first int) string {
	var sel, arr []string
	for i, c := range b.cols {
		sel = append(sel, "u."+c+"::"+b.types[i])
		arr = append(arr, "$"+strconv.Itoa(first+i)+"::text[]")
	}
	return "INSERT INTO " + b.table + " (" + strings.Join(b.cols, ", ") + ") SELECT " + strings.Join(sel, ", ") +
		" FROM unnest(" + strings.Join(arr, ", ") + ") AS u(" + strings.Join(b.cols, ", ") + ")" + b.tail
}

// batchRow is one row of a batchInsert.
type batchRow struct {
	ins  *batchInsert
	args []any
}

// maxBatchParams keeps one SQLite statement under its parameter limit.
const maxBatchParams = 30000

// values returns n placeholders rows "(?, ?), (?, ?)".
func (b *batchInsert) values(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(b.cols)), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// execRows inserts rows, the inserts in the order they first appear: on
// PostgreSQL in one statement, on SQLite one (or, past the parameter
// limit, more) per insert.
func (d *DB) execRows(ctx context.Context, tx *sqlx.Tx, rows []batchRow) error {
	if len(rows) == 0 {
		return nil
	}
	order, byIns, err := groupRows(rows)
	if err != nil {
		return err
	}
	if d.dialect == Postgres {
		return d.insertPG(ctx, tx, order, byIns)
	}
	for _, ins := range order {
		if err := d.insertSQLite(ctx, tx, ins, byIns[ins]); err != nil {
			return err
		}
	}
	return nil
}

// groupRows groups rows by insert, the inserts in the order they first
// appear, each insert's rows sorted by its sortKey.
func groupRows(rows []batchRow) ([]*batchInsert, map[*batchInsert][]batchRow, error) {
	var order []*batchInsert
	byIns := map[*batchInsert][]batchRow{}
	for _, r := range rows {
		if len(r.args) != len(r.ins.cols) {
			return nil, nil, fmt.Errorf("batch insert into %s: row has %d values, want %d", r.ins.table, len(r.args), len(r.ins.cols))
		}
		if _, seen := byIns[r.ins]; !seen {
			order = append(order, r.ins)
		}
		byIns[r.ins] = append(byIns[r.ins], r)
	}
	for _, ins := range order {
		if k := ins.sortKey; k >= 0 {
			slices.SortStableFunc(byIns[ins], func(a, b batchRow) int {
				return strings.Compare(sortText(a.args[k]), sortText(b.args[k]))
			})
		}
	}
	return order, byIns, nil
}

func sortText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// insertBatch inserts rows of one batchInsert.
func (d *DB) insertBatch(ctx context.Context, tx *sqlx.Tx, ins *batchInsert, rows []batchRow) error {
	if d.dialect == Postgres {
		return d.insertPG(ctx, tx, []*batchInsert{ins}, map[*batchInsert][]batchRow{ins: rows})
	}
	return d.insertSQLite(ctx, tx, ins, rows)
}

// insertPG runs the inserts as one prepared statement (pgInsert).
func (d *DB) insertPG(ctx context.Context, tx *sqlx.Tx, order []*batchInsert, byIns map[*batchInsert][]batchRow) error {
	text, arrays, err := pgInsert(order, byIns)
	if err != nil {
		return err
	}
	args := make([]any, len(arrays))
	for i, a := range arrays {
		args[i] = a
	}
	if st := d.stmtInTx(ctx, tx, text); st != nil {
		_, err := st.ExecContext(ctx, args...)
		return err
	}
	_, err = tx.ExecContext(ctx, text, args...)
	return err
}

// pgInsert is the one statement for the inserts — WITH i0 AS (INSERT …),
// i1 AS (INSERT …) INSERT … — and its arguments, a text array per column
// of each insert in order.
func pgInsert(order []*batchInsert, byIns map[*batchInsert][]batchRow) (string, []textArray, error) {
	var (
		parts []string
		args  []textArray
	)
	for _, ins := range order {
		parts = append(parts, ins.pgSQL(len(args)+1))
		cols, err := ins.columns(byIns[ins])
		if err != nil {
			return "", nil, err
		}
		args = append(args, cols...)
	}
	text := parts[len(parts)-1]
	if len(parts) > 1 {
		with := make([]string, len(parts)-1)
		for i, p := range parts[:len(parts)-1] {
			with[i] = fmt.Sprintf("i%d AS (%s)", i, p)
		}
		text = "WITH " + strings.Join(with, ", ") + " " + text
	}
	return text, args, nil
}

// columns returns rows as PostgreSQL text arrays, one per column.
func (b *batchInsert) columns(rows []batchRow) ([]textArray, error) {
	cols := make([]textArray, len(b.cols))
	for c := range cols {
		cols[c] = make(textArray, len(rows))
	}
	for r, row := range rows {
		for c, v := range row.args {
			s, err := pgText(v)
			if err != nil {
				return nil, fmt.Errorf("batch insert into %s, column %s: %w", b.table, b.cols[c], err)
			}
			cols[c][r] = s
		}
	}
	return cols, nil
}

// insertSQLite inserts rows with VALUES lists under the parameter limit.
func (d *DB) insertSQLite(ctx context.Context, tx *sqlx.Tx, ins *batchInsert, rows []batchRow) error {
	per := max(1, maxBatchParams/len(ins.cols))
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		args := make([]any, 0, len(chunk)*len(ins.cols))
		for _, r := range chunk {
			args = append(args, r.args...)
		}
		text := "INSERT INTO " + ins.table + " (" + strings.Join(ins.cols, ", ") + ") VALUES " + ins.values(len(chunk)) + ins.tail
		if _, err := tx.ExecContext(ctx, text, args...); err != nil {
			return err
		}
	}
	return nil
}

// pgText renders a value as PostgreSQL's text input for its column type.
func pgText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case json.RawMessage:
		return string(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("unsupported value type %T", v)
}

// textArray is a PostgreSQL text[] parameter. Its Value is built in one
// allocation of the exact size (pq.StringArray grows its buffer element by
// element: on the hot path, kilobytes of decision documents per row), and
// is []byte, which lib/pq sends for a text[] parameter without copying.
// On a connection with binary_parameters (the group commit's, wire.go)
// lib/pq takes BinaryValue instead: the group commit renders its arrays
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
	n := 12
	if len(a) > 0 {
		n += 8
	}
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
	if len(a) == 0 {
		b = binary.BigEndian.AppendUint32(b, 0) // no dimensions: '{}'
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	b = binary.BigEndian.AppendUint32(b, 0) // no nulls
	b = binary.BigEndian.AppendUint32(b, textOID)
	if len(a) > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(a)))
		b = binary.BigEndian.AppendUint32(b, 1) // lower bound
	}
	for _, s := range a {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
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
