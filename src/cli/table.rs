//! virsh's table layout (tools/vsh-table.c): every cell after one space,
//! columns padded to their widest cell plus two, then a dividing line of
//! width + 3 dashes per column.

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            out.push(' ');
            out.push_str(cell);
            if i + 1 < columns {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    out.push_str(&"-".repeat(widths.iter().map(|w| w + 3).sum()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_like_virsh_list() {
        let rows = vec![
            vec!["7".to_string(), "c1".to_string(), "running".to_string()],
            vec!["-".to_string(), "c2".to_string(), "shut off".to_string()],
        ];
        assert_eq!(
            render(&["Id", "Name", "State"], &rows),
            " Id   Name   State\n-----------------------\n 7    c1     running\n -    c2     shut off\n"
        );
    }
}
