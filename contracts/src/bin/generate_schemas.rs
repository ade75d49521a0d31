//! Writes the JSON Schemas of the wire contracts to `contracts/schema/`.

use sagaflow_contracts::schema;

fn main() -> std::io::Result<()> {
    let dir = schema::dir();
    std::fs::create_dir_all(&dir)?;
    for (name, s) in schema::all() {
        let path = dir.join(name);
        std::fs::write(&path, schema::render(&s))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
