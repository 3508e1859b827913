package groupcommit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Insert is an INSERT that the committer merges across the callers of one
// group into multi-row statements: the hot path (a gate decision, its
// release row and its audit row per check) then costs one statement per
// group for the rows and one for the chain, instead of some per caller.
//
// On PostgreSQL a statement takes one text array per column and unnests
// it, so its text is the same for any number of rows; the inserts of one
// call go into one statement (data-modifying WITH clauses), prepared once
// per connection and never parsed or planned again. SQLite gets a VALUES
// list per insert.
type Insert struct {
	table string
	cols  []string
	// types are the columns' PostgreSQL types, for the casts from text.
	types []string
	tail  string // " ON CONFLICT … DO NOTHING", or ""
	// conflictFree rows never make a transaction that holds the chain lock
	// wait: they are written before it is taken, and a group of them (and
	// entries) can be one statement. True of new unique ids, and of rows
	// that only other conflict-free inserts write (a writer function that
	// writes the same table would break it: PostgreSQL would then detect a
	// deadlock and the group be rerun, lock first).
	conflictFree bool
	// sortKey, when >= 0, is the column rows are sorted by before they are
	// inserted, so two transactions inserting the same keys take their
	// locks in the same order (no deadlock between them).
	sortKey int
	// shape names the insert's statement (table, columns and types,
	// tail), for caching statement texts (oneStatementText).
	shape string
}

// NewInsert describes an insert into table's columns cols, of PostgreSQL
// types types, followed by tail (an ON CONFLICT clause, or "").
func NewInsert(table string, cols, types []string, tail string) *Insert {
	if len(cols) != len(types) {
		panic("groupcommit.NewInsert: a type per column")
	}
	shape := table + "(" + strings.Join(cols, ",") + ")" + strings.Join(types, ",") + tail
	return &Insert{table: table, cols: cols, types: types, tail: tail, sortKey: -1, shape: shape}
}

// ConflictFree marks the insert's rows conflict-free (see Insert), sorted
// by column sortKey (or not, -1).
func (b *Insert) ConflictFree(sortKey int) *Insert {
	b.conflictFree, b.sortKey = true, sortKey
	return b
}

// Row is one row of an Insert.
type Row struct {
	Insert *Insert
	Args   []any
	// Once, when set, names a row that never changes once inserted (its
	// insert does nothing on conflict): after a commit that carried it,
	// later requests leave it out, saving its conflict check inside the
	// group every caller waits for.
	Once string
}

// pgSQL is b's PostgreSQL statement with its arrays at $first… .
func (b *Insert) pgSQL(first int) string {
	return b.pgSQLWith(func(i int) string { return "$" + strconv.Itoa(first+i) + "::text[]" })
}

// pgSQLWith is b's PostgreSQL statement with column i's array at ref(i).
func (b *Insert) pgSQLWith(ref func(i int) string) string {
	var sel, arr []string
	for i, c := range b.cols {
		sel = append(sel, "u."+c+"::"+b.types[i])
		arr = append(arr, ref(i))
	}
	return "INSERT INTO " + b.table + " (" + strings.Join(b.cols, ", ") + ") SELECT " + strings.Join(sel, ", ") +
		" FROM unnest(" + strings.Join(arr, ", ") + ") AS u(" + strings.Join(b.cols, ", ") + ")" + b.tail
}

// maxSQLiteParams keeps one SQLite statement under its parameter limit.
const maxSQLiteParams = 30000

// values returns n placeholders rows "(?, ?), (?, ?)".
func (b *Insert) values(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(b.cols)), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// execRows inserts rows, the inserts in the order they first appear: on
// PostgreSQL in one statement, on SQLite one (or, past the parameter
// limit, more) per insert.
func (c *Committer) execRows(ctx context.Context, tx *sqlx.Tx, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	order, byIns, err := groupRows(rows)
	if err != nil {
		return err
	}
	if c.postgres {
		return c.insertPG(ctx, tx, order, byIns)
	}
	for _, ins := range order {
		if err := insertSQLite(ctx, tx, ins, byIns[ins]); err != nil {
			return err
		}
	}
	return nil
}

// groupRows groups rows by insert, the inserts in the order they first
// appear, each insert's rows sorted by its sortKey.
func groupRows(rows []Row) ([]*Insert, map[*Insert][]Row, error) {
	var order []*Insert
	byIns := map[*Insert][]Row{}
	for _, r := range rows {
		if len(r.Args) != len(r.Insert.cols) {
			return nil, nil, fmt.Errorf("insert into %s: row has %d values, want %d", r.Insert.table, len(r.Args), len(r.Insert.cols))
		}
		if _, seen := byIns[r.Insert]; !seen {
			order = append(order, r.Insert)
		}
		byIns[r.Insert] = append(byIns[r.Insert], r)
	}
	for _, ins := range order {
		if k := ins.sortKey; k >= 0 {
			slices.SortStableFunc(byIns[ins], func(a, b Row) int {
				return strings.Compare(sortText(a.Args[k]), sortText(b.Args[k]))
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

// insertPG runs the inserts as one statement (pgInsert), prepared when
// the store has it prepared already.
func (c *Committer) insertPG(ctx context.Context, tx *sqlx.Tx, order []*Insert, byIns map[*Insert][]Row) error {
	text, arrays, err := pgInsert(order, byIns)
	if err != nil {
		return err
	}
	args := make([]any, len(arrays))
	for i, a := range arrays {
		args[i] = a
	}
	if c.cfg.Prepared != nil {
		if st := c.cfg.Prepared(ctx, tx, text); st != nil {
			_, err := st.ExecContext(ctx, args...)
			return err
		}
	}
	_, err = tx.ExecContext(ctx, text, args...)
	return err
}

// pgInsert is the one statement for the inserts — WITH i0 AS (INSERT …),
// i1 AS (INSERT …) INSERT … — and its arguments, a text array per column
// of each insert in order.
func pgInsert(order []*Insert, byIns map[*Insert][]Row) (string, []textArray, error) {
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
func (b *Insert) columns(rows []Row) ([]textArray, error) {
	cols := make([]textArray, len(b.cols))
	for c := range cols {
		cols[c] = make(textArray, len(rows))
	}
	for r, row := range rows {
		for c, v := range row.Args {
			s, err := pgText(v)
			if err != nil {
				return nil, fmt.Errorf("insert into %s, column %s: %w", b.table, b.cols[c], err)
			}
			cols[c][r] = s
		}
	}
	return cols, nil
}

// insertSQLite inserts rows with VALUES lists under the parameter limit.
func insertSQLite(ctx context.Context, tx *sqlx.Tx, ins *Insert, rows []Row) error {
	per := max(1, maxSQLiteParams/len(ins.cols))
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		args := make([]any, 0, len(chunk)*len(ins.cols))
		for _, r := range chunk {
			args = append(args, r.Args...)
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
