//! A valid component of another world (it exports `run`, not `init`/`handle`), to show that
//! `plexus check` refuses it with a clear reason.

wit_bindgen::generate!({
    inline: "
        package test:elsewhere;
        world other {
            export run: func(input: string) -> string;
        }
    ",
    world: "test:elsewhere/other",
});

struct Other;

impl Guest for Other {
    fn run(input: String) -> String {
        input
    }
}

export!(Other);
