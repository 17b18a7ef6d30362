// Package wit_runtime is the memory the generated bindings share with the host: buffers the
// host writes results and arguments into, kept from the garbage collector while the host
// holds their address, and the cabi_realloc export the host asks for them with.
package wit_runtime

import (
	"runtime"
	"unsafe"
)

// Allocate returns size zeroed bytes aligned to 8 (no WIT type needs more), pinned by
// pinner: the collector neither frees nor moves them until pinner is unpinned.
func Allocate(pinner *runtime.Pinner, size, align uintptr) unsafe.Pointer {
	if size == 0 {
		return nil
	}
	if align > 8 {
		panic("wit_runtime: no WIT type is aligned to more than 8")
	}
	words := make([]uint64, (size+7)/8)
	pointer := unsafe.Pointer(unsafe.SliceData(words))
	pinner.Pin(pointer)
	return pointer
}

// hostPinner keeps what the host wrote into memory it asked for (the arguments of an
// export, the results of an import) until the bindings have copied it out.
var hostPinner runtime.Pinner

// Unpin lets the collector have the memory the host asked for since the last Unpin.
func Unpin() { hostPinner.Unpin() }

// runtimeStarted says whether Go's runtime has finished starting: package initialisation
// runs after it.
var runtimeStarted bool

func init() { runtimeStarted = true }

// sbrk is the Go runtime's page allocator for WebAssembly.
//
//go:linkname sbrk runtime.sbrk
func sbrk(n uintptr) unsafe.Pointer

// cabiRealloc is how the host, and the WASI adapter inside the component, ask the module
// for memory. The host only asks for fresh memory, never to grow what it was given.
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uintptr) unsafe.Pointer {
	if old != nil || oldSize != 0 {
		panic("wit_runtime: cabi_realloc cannot grow an allocation")
	}
	if !runtimeStarted {
		// The WASI adapter asks for its own memory while the runtime is still starting
		// (the runtime's first WASI calls reach it), when Go's heap cannot serve yet.
		// Taking the pages from the runtime's own allocator keeps its record of where
		// its memory ends true: pages grown behind its back would be handed out twice.
		start := uintptr(sbrk(newSize + align - 1))
		return unsafe.Pointer((start + align - 1) &^ (align - 1))
	}
	return Allocate(&hostPinner, newSize, align)
}
