//! [`Cached`]: SQL text with `$1…$n` placeholders as a diesel query that
//! the connection's statement cache keeps — prepared once per connection,
//! then only bound and executed.
//!
//! diesel's own `sql_query` marks itself unsafe to cache (its text could be
//! built from anything), so every call would be parsed and planned again.
//! Palisade's statements are fixed text, or pg-common's documents
//! [`Statement`](palisade_pg_common::documents::Statement)s, which say
//! whether a generic plan serves them. The text is split at its
//! placeholders, and each value is pushed where its placeholder was, so
//! diesel numbers them itself. Placeholders must appear once each, in order
//! (`$1`, `$2`, …); text that breaks that rule is a query-builder error, never
//! a query with values in the wrong places.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::QueryResult;

/// A query from SQL text and values bound in placeholder order.
pub(crate) struct Cached {
    text: Cow<'static, str>,
    /// Byte ranges of the placeholders `$1…$n`, in order; `None` when the
    /// text breaks the rule in the module docs.
    placeholders: Option<Vec<(usize, usize)>>,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send>>,
    cache: bool,
}

impl Cached {
    /// `text` (fixed fragments and `$n` placeholders only), kept in the
    /// statement cache.
    pub(crate) fn new(text: impl Into<Cow<'static, str>>) -> Self {
        let text = text.into();
        let placeholders = placeholders(&text);
        Cached { text, placeholders, binds: Vec::new(), cache: true }
    }

    /// Binds the next placeholder to `value` as SQL type `ST`.
    pub(crate) fn bind<ST, T>(mut self, value: T) -> Self
    where
        Pg: HasSqlType<ST>,
        T: ToSql<ST, Pg> + Send + 'static,
        ST: Send + 'static,
    {
        self.binds.push(Box::new(Param { value, sql_type: PhantomData::<ST> }));
        self
    }

    /// Run unnamed instead (planned with the values on every call).
    pub(crate) fn uncached(mut self) -> Self {
        self.cache = false;
        self
    }
}

/// The byte ranges of `$1…$n` in `text`, if they appear once each, in order.
fn placeholders(text: &str) -> Option<Vec<(usize, usize)>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 {
                let n: usize = text[i + 1..i + 1 + digits].parse().ok()?;
                if n != found.len() + 1 {
                    return None;
                }
                found.push((i, i + 1 + digits));
                i += 1 + digits;
                continue;
            }
        }
        i += 1;
    }
    Some(found)
}

/// One bound value, pushed where its placeholder was.
struct Param<ST, T> {
    value: T,
    sql_type: PhantomData<ST>,
}

impl<ST, T> QueryFragment<Pg> for Param<ST, T>
where
    Pg: HasSqlType<ST>,
    T: ToSql<ST, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.value)
    }
}

impl QueryFragment<Pg> for Cached {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !self.cache {
            out.unsafe_to_cache_prepared();
        }
        let marks = match &self.placeholders {
            Some(marks) if marks.len() == self.binds.len() => marks,
            _ => {
                return Err(diesel::result::Error::QueryBuilderError(
                    "statement placeholders are not $1…$n once each, in order, one per bound value".into(),
                ))
            }
        };
        let mut from = 0;
        for ((start, end), bind) in marks.iter().zip(&self.binds) {
            out.push_sql(&self.text[from..*start]);
            bind.walk_ast(out.reborrow())?;
            from = *end;
        }
        out.push_sql(&self.text[from..]);
        Ok(())
    }
}

impl QueryId for Cached {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Cached {
    type SqlType = Untyped;
}


#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{BigInt, Text};

    #[test]
    fn placeholders_must_appear_once_each_in_order() {
        assert_eq!(placeholders("SELECT $1::text, $2 FROM t WHERE a = $3"), Some(vec![(7, 9), (17, 19), (37, 39)]));
        assert_eq!(placeholders("SELECT 1"), Some(vec![]));
        assert_eq!(placeholders("SELECT $2, $1"), None);
        assert_eq!(placeholders("SELECT $1, $1"), None);
        assert_eq!(placeholders("SELECT '$' || $1"), Some(vec![(14, 16)]), "a bare $ is text");
    }

    #[test]
    fn values_go_where_their_placeholders_were_and_the_statement_is_cacheable() {
        let q = Cached::new("SELECT $1::text, $2::bigint").bind::<Text, _>("a".to_owned()).bind::<BigInt, _>(5_i64);
        assert_eq!(diesel::debug_query::<Pg, _>(&q).to_string(), r#"SELECT $1::text, $2::bigint -- binds: ["a", 5]"#);
        assert!(q.is_safe_to_cache_prepared(&Pg).unwrap());
        assert!(!q.uncached().is_safe_to_cache_prepared(&Pg).unwrap());
        let wrong = Cached::new("SELECT $1").bind::<Text, _>("a".to_owned()).bind::<Text, _>("b".to_owned());
        assert!(wrong.is_safe_to_cache_prepared(&Pg).is_err(), "one value too many");
    }
}
