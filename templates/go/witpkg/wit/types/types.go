// Package wit_types holds the generic WIT types the generated bindings use: option,
// result, tuple and the unit type.
package wit_types

// The tags of an Option.
const (
	OptionNone = 0
	OptionSome = 1
)

// Option is a WIT option<T>: a value, or none.
type Option[T any] struct {
	tag   uint8
	value T
}

// Some is an Option holding value.
func Some[T any](value T) Option[T] { return Option[T]{tag: OptionSome, value: value} }

// None is an empty Option.
func None[T any]() Option[T] { return Option[T]{tag: OptionNone} }

// Tag says which the Option is: OptionNone or OptionSome.
func (o Option[T]) Tag() uint8 { return o.tag }

// IsSome says whether the Option holds a value.
func (o Option[T]) IsSome() bool { return o.tag == OptionSome }

// IsNone says whether the Option is empty.
func (o Option[T]) IsNone() bool { return o.tag == OptionNone }

// Some returns the value; it panics on an empty Option.
func (o Option[T]) Some() T {
	if o.tag != OptionSome {
		panic("Some() of an empty Option")
	}
	return o.value
}

// SomeOr returns the value, or fallback when the Option is empty.
func (o Option[T]) SomeOr(fallback T) T {
	if o.tag != OptionSome {
		return fallback
	}
	return o.value
}

// The tags of a Result.
const (
	ResultOk  = 0
	ResultErr = 1
)

// Result is a WIT result<T, E>: a value or an error.
type Result[T any, E any] struct {
	tag uint8
	ok  T
	err E
}

// Ok is a Result holding value.
func Ok[T any, E any](value T) Result[T, E] { return Result[T, E]{tag: ResultOk, ok: value} }

// Err is a Result holding the error value.
func Err[T any, E any](value E) Result[T, E] { return Result[T, E]{tag: ResultErr, err: value} }

// Tag says which the Result is: ResultOk or ResultErr.
func (r Result[T, E]) Tag() uint8 { return r.tag }

// IsOk says whether the Result holds a value.
func (r Result[T, E]) IsOk() bool { return r.tag == ResultOk }

// IsErr says whether the Result holds an error.
func (r Result[T, E]) IsErr() bool { return r.tag == ResultErr }

// Ok returns the value; it panics on an error.
func (r Result[T, E]) Ok() T {
	if r.tag != ResultOk {
		panic("Ok() of an error Result")
	}
	return r.ok
}

// Err returns the error; it panics on a value.
func (r Result[T, E]) Err() E {
	if r.tag != ResultErr {
		panic("Err() of an ok Result")
	}
	return r.err
}

// Tuple2 is a WIT tuple<T0, T1>.
type Tuple2[T0 any, T1 any] struct {
	F0 T0
	F1 T1
}

// Unit is WIT's empty type: the `_` of result<_, E>.
type Unit struct{}
