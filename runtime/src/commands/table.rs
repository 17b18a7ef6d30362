//! Plain-text tables for people: columns padded to their widest cell, two spaces apart,
//! the last column left unpadded.

use std::io::Write;

/// Writes `header` and `rows` as aligned columns.
pub fn write<const N: usize>(
    out: &mut dyn Write,
    header: &[String; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line += cell;
            } else {
                line += &format!("{cell:<width$}  ", width = widths[i]);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let mut out = Vec::new();
        let header = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
        let rows = [["long".to_owned(), "x".to_owned(), "last one".to_owned()]];
        super::write(&mut out, &header, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A     B  C\nlong  x  last one\n"
        );
    }
}
