//! What a projection is: a name, a version, a pure fold over decoded events, and the
//! row type it folds into (one SQL table, keyed by one text column).
//!
//! The runner (`runner.rs`) and the rebuilder (`rebuild.rs`) are generic over
//! [`Projection`]; the SQL they run is generic over [`Record`] (`sql.rs`), so adding a
//! read model means writing its fold, its row type (with [`record!`]) and a migration.

use crate::events::RecordedEvent;

/// A value in a read-model column, as both backends store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

/// The SQL type of a column: `TEXT`, or `INTEGER` (SQLite) / `BIGINT` (PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Written when the row is inserted and never changed by the fold afterwards. An
    /// upsert leaves it out of its update, so an index on it is not rewritten for every
    /// update of the row (SQLite rewrites an index whose column an `UPDATE` sets, even
    /// to the value it had).
    pub fixed: bool,
}

/// A read-model row. Implemented with [`record!`], which keeps the column list and the
/// conversions in one place.
pub trait Record: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// Every column in table order; the first is the primary key.
    const COLUMNS: &'static [Column];
    fn key(&self) -> &str;
    /// Rows of an erased tenant are deleted (`TenantErased`).
    fn tenant_id(&self) -> &str;
    fn to_cells(&self) -> Vec<Cell>;
    fn from_cells(cells: Vec<Cell>) -> Result<Self, String>;

    /// The cells of the [`Column::fixed`] columns.
    fn fixed_cells(&self) -> Vec<Cell> {
        self.to_cells()
            .into_iter()
            .zip(Self::COLUMNS)
            .filter(|(_, column)| column.fixed)
            .map(|(cell, _)| cell)
            .collect()
    }
}

/// A read model: a pure fold of events into rows.
pub trait Projection: Send + Sync + 'static {
    type Row: Record;
    /// An event as this projection understands it.
    type Event: Send + Sync;
    /// The projection's name: its table's name and its checkpoint's name.
    const NAME: &'static str;
    /// Bumped whenever the fold or the table changes meaning: a stored version that
    /// differs makes the next start rebuild the read model (`rebuild.rs`).
    const VERSION: u32;
    /// Decodes an event this projection folds, with the key of the row it touches;
    /// `None` for events it does not care about (or cannot read).
    fn decode(event: &RecordedEvent) -> Option<(String, Self::Event)>;
    /// Folds one event into the row it touches. Pure.
    fn apply(
        row: Option<Self::Row>,
        event: Self::Event,
        recorded: &RecordedEvent,
    ) -> Option<Self::Row>;
}

/// Implements [`Record`] for a struct from its field list, in table order. Kinds:
/// `text` (`String`), `opt_text` (`Option<String>`), `int` (`i64`), `opt_int`
/// (`Option<i64>`); a kind followed by `fixed` marks a [`Column::fixed`] column.
#[macro_export]
macro_rules! record {
    ($ty:ty, key = $key:ident, tenant = $tenant:ident, { $($field:ident : $kind:ident $($fixed:ident)?),+ $(,)? }) => {
        impl $crate::projections::model::Record for $ty {
            const COLUMNS: &'static [$crate::projections::model::Column] = &[
                $($crate::projections::model::Column {
                    name: stringify!($field),
                    kind: $crate::record!(@kind $kind),
                    fixed: $crate::record!(@fixed $($fixed)?),
                }),+
            ];
            fn key(&self) -> &str {
                &self.$key
            }
            fn tenant_id(&self) -> &str {
                &self.$tenant
            }
            fn to_cells(&self) -> Vec<$crate::projections::model::Cell> {
                vec![$($crate::record!(@to $kind, self.$field)),+]
            }
            fn from_cells(
                cells: Vec<$crate::projections::model::Cell>,
            ) -> Result<Self, String> {
                let mut cells = cells.into_iter();
                Ok(Self {
                    $($field: $crate::record!(@from $kind, stringify!($field), cells.next())?),+
                })
            }
        }
    };
    (@fixed) => { false };
    (@fixed fixed) => { true };
    (@kind text) => { $crate::projections::model::Kind::Text };
    (@kind opt_text) => { $crate::projections::model::Kind::Text };
    (@kind int) => { $crate::projections::model::Kind::Int };
    (@kind opt_int) => { $crate::projections::model::Kind::Int };
    (@to text, $v:expr) => { $crate::projections::model::Cell::Text(Some($v.clone())) };
    (@to opt_text, $v:expr) => { $crate::projections::model::Cell::Text($v.clone()) };
    (@to int, $v:expr) => { $crate::projections::model::Cell::Int(Some($v)) };
    (@to opt_int, $v:expr) => { $crate::projections::model::Cell::Int($v) };
    (@from text, $name:expr, $cell:expr) => {
        match $cell {
            Some($crate::projections::model::Cell::Text(Some(v))) => Ok(v),
            other => Err(format!("column {}: expected text, got {:?}", $name, other)),
        }
    };
    (@from opt_text, $name:expr, $cell:expr) => {
        match $cell {
            Some($crate::projections::model::Cell::Text(v)) => Ok(v),
            other => Err(format!("column {}: expected text or null, got {:?}", $name, other)),
        }
    };
    (@from int, $name:expr, $cell:expr) => {
        match $cell {
            Some($crate::projections::model::Cell::Int(Some(v))) => Ok(v),
            other => Err(format!("column {}: expected an integer, got {:?}", $name, other)),
        }
    };
    (@from opt_int, $name:expr, $cell:expr) => {
        match $cell {
            Some($crate::projections::model::Cell::Int(v)) => Ok(v),
            other => Err(format!("column {}: expected an integer or null, got {:?}", $name, other)),
        }
    };
}
