//! Writes the JSON Schemas of the wire contracts to `contracts/schema/` (envelopes) and
//! `contracts/schema/activities/` (each demo activity's input and output).

use sagaflow_contracts::schema;

fn main() -> std::io::Result<()> {
    let dir = schema::dir();
    for (name, s) in schema::all() {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, schema::render(&s))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
