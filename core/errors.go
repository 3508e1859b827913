package core

import (
	"errors"
	"fmt"
)

// ErrorKind classifies a failure so the HTTP layer can map it to a status in
// one place and the CLI to an exit code.
type ErrorKind string

// The error kinds. The string values are the public `error.code` values of
// the HTTP contract.
const (
	KindInvalid      ErrorKind = "invalid"      // the caller sent something wrong (400/422)
	KindNotFound     ErrorKind = "not_found"    // no such record (404)
	KindConflict     ErrorKind = "conflict"     // a uniqueness or state conflict (409)
	KindUnauthorized ErrorKind = "unauthorized" // no or bad credentials (401)
	KindForbidden    ErrorKind = "forbidden"    // credentials lack the role (403)
	KindTooLarge     ErrorKind = "too_large"    // body or list over its limit (413)
	KindUnavailable  ErrorKind = "unavailable"  // a dependency is down; retry later (503)
	KindRateLimited  ErrorKind = "rate_limited" // over a rate limit; retry after (429)
	KindInternal     ErrorKind = "internal"     // a bug or an unexpected failure (500)
)

// Error is tollgate's one error type. Message is safe to show to a client;
// Err (the cause) is for logs only.
type Error struct {
	Kind    ErrorKind
	Message string
	// Field names the offending input field for KindInvalid, when there is one.
	Field string
	Err   error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message.
func Errorf(kind ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a KindInvalid error naming the offending field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound returns a KindNotFound error for a record of what with key.
func NotFound(what, key string) *Error {
	return &Error{Kind: KindNotFound, Message: fmt.Sprintf("%s %q not found", what, key)}
}

// Wrap returns an *Error of kind wrapping cause; message is client-safe.
func Wrap(kind ErrorKind, cause error, message string) *Error {
	return &Error{Kind: kind, Message: message, Err: cause}
}

// KindOf reports the kind of err: the kind of the first *Error in its chain,
// or KindInternal.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsKind reports whether err's kind is kind.
func IsKind(err error, kind ErrorKind) bool { return err != nil && KindOf(err) == kind }

// StoreDown is a KindUnavailable error for a failure of the store itself
// (the database unreachable, its connection lost, out of resources,
// read-only), as opposed to contention on the rows a call touched: such a
// failure says nothing about the request, and work retried because of it
// should not be held against what it was doing (IsStoreDown). Its text is
// message and cause, as Wrap's.
func StoreDown(cause error, message string) *Error {
	return &Error{Kind: KindUnavailable, Message: message, Err: storeDown{cause}}
}

// IsStoreDown reports whether err is, or wraps, a StoreDown error.
func IsStoreDown(err error) bool {
	var d storeDown
	return errors.As(err, &d)
}

type storeDown struct{ cause error }

func (d storeDown) Error() string {
	if d.cause == nil {
		return "store down"
	}
	return d.cause.Error()
}
func (d storeDown) Unwrap() error { return d.cause }

// Sentinel errors that stores return (wrapped with context). They are
// *Error values, so KindOf classifies them.
var (
	ErrNotFound = &Error{Kind: KindNotFound, Message: "not found"}
	ErrConflict = &Error{Kind: KindConflict, Message: "conflict"}
)

// ErrOwnCommit is what a store returns for a write made inside a shared
// transaction (its Together) that needs a commit of its own: one that goes
// through the audit chain's group commit, which a transaction holding
// row locks must not wait for. The caller rolls the shared transaction back
// and makes the write again outside it. It is an internal error: it never
// reaches a client.
var ErrOwnCommit = &Error{Kind: KindInternal, Message: "the write needs a commit of its own, outside the shared transaction"}
