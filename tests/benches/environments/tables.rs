//! The benchmark's tables: their columns, a row per round (with `SAMPLES=1`), and the medians.

use std::time::Duration;

use autopilot_tests::figures::percentile;

/// A table's columns: name, width and decimals.
pub type Columns = [(&'static str, usize, usize)];

/// The first task's: seconds but for the keep copy's MB/s, then its upload to the edge's store
/// (while the agent works) as its note says.
pub const FIRST: [(&str, usize, usize); 10] = [
    ("start->agent", 12, 3),
    ("start", 6, 3),
    ("clone", 6, 3),
    ("setup script", 12, 3),
    ("keep", 6, 3),
    ("MB/s", 6, 1),
    ("agent launch", 12, 3),
    ("other", 6, 3),
    ("upload", 6, 2),
    ("up MB/s", 7, 1),
];

/// The second task's: seconds, then the prepared workspace copied (files, MB, MB/s).
pub const SECOND: [(&str, usize, usize); 11] = [
    ("start->agent", 12, 3),
    ("start", 6, 3),
    ("copy", 6, 3),
    ("fetch", 6, 3),
    ("maintenance", 11, 3),
    ("agent launch", 12, 3),
    ("other", 6, 3),
    ("files", 6, 0),
    ("MB", 5, 1),
    ("copy MB/s", 9, 1),
    ("MB/(start-fetch)", 16, 1),
];

/// The third task's: seconds, then the restore's size and speed: the store's bytes (the note's
/// MB) over the restore by the events' times, and the note's own seconds and MB/s.
pub const THIRD: [(&str, usize, usize); 12] = [
    ("start->agent", 12, 3),
    ("start", 6, 3),
    ("restore", 7, 3),
    ("copy", 6, 3),
    ("fetch", 6, 3),
    ("maintenance", 11, 3),
    ("agent launch", 12, 3),
    ("other", 6, 3),
    ("MB", 5, 1),
    ("MB/s", 6, 1),
    ("note s", 6, 2),
    ("note MB/s", 9, 1),
];

fn print_row(label: &str, columns: &Columns, values: &[f64]) {
    let cells: Vec<String> =
        columns.iter().zip(values).map(|((_, width, decimals), value)| format!("{value:>width$.decimals$}")).collect();
    println!("{label:<8} {}", cells.join(" "));
}

/// The table of `rows` (one per round, printed with `SAMPLES=1`) and its medians, column by column.
pub fn print_table(title: &str, columns: &Columns, rows: &[Vec<f64>], samples: bool) -> Vec<f64> {
    println!("{title}");
    let names: Vec<String> = columns.iter().map(|(name, width, _)| format!("{name:>width$}")).collect();
    println!("{:<8} {}", "", names.join(" "));
    if samples {
        for (i, row) in rows.iter().enumerate() {
            print_row(&format!("round {}", i + 1), columns, row);
        }
    }
    let medians: Vec<f64> = (0..columns.len()).map(|c| median(rows.iter().map(|row| row[c]).collect())).collect();
    print_row("median", columns, &medians);
    medians
}

/// The median of `values` (nearest rank, as [`percentile`] takes it).
pub fn median(values: Vec<f64>) -> f64 {
    let mut samples: Vec<Duration> = values.into_iter().map(|v| Duration::from_secs_f64(v.max(0.0))).collect();
    percentile(&mut samples, 0.5).as_secs_f64()
}
