// The generated bindings (wit_exports.go and the plexus_plugin_* packages, written by
// `plexus new`; `plexus bindings --lang go` writes them again) name this module
// wit_component, and import the WIT support package go.bytecodealliance.org/pkg. The
// project carries its own implementation of the part of that package they use, in witpkg/:
// the published one needs a newer Go, and the project then builds offline.
module wit_component

go 1.24

require go.bytecodealliance.org/pkg v0.4.0

replace go.bytecodealliance.org/pkg => ./witpkg
