//! [`Cached`]: SQL text with `$1…$n` placeholders as a diesel query that
//! the connection's statement cache keeps — prepared once per connection,
//! then only bound and executed.
//!
//! diesel's own `sql_query` marks itself unsafe to cache (its text could be
//! built from anything), so every call would be parsed and planned again.
//! Palisade's statements are fixed text, or pg-common's documents
//! [`Statement`](palisade_pg_common::documents::Statement)s, which say
//! whether a generic plan serves them. The text is split at its
//! placeholders, and each occurrence of `$k` is replaced by value `k` pushed
//! as a parameter of its own, so diesel numbers them itself (a placeholder
//! used twice sends its value twice). Text naming a placeholder with no
//! value, or a value no placeholder names, is a query-builder error, never a
//! query with values in the wrong places.

use std::borrow::Cow;
use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::QueryResult;

/// A query from SQL text and values bound in placeholder order.
pub(crate) struct Cached<'a> {
    text: Cow<'static, str>,
    /// Each placeholder in the text: its byte range and its number.
    placeholders: Vec<Placeholder>,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send + 'a>>,
    cache: bool,
}

impl<'a> Cached<'a> {
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
        T: ToSql<ST, Pg> + Send + 'a,
        ST: Send + 'a,
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

/// `$k` at `start..end` of the text.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placeholder {
    start: usize,
    end: usize,
    k: usize,
}

/// Every `$<digits>` in `text`, in order (a number too large reads as 0,
/// which no value has).
fn placeholders(text: &str) -> Vec<Placeholder> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if bytes[i] == b'$' && digits > 0 {
            let end = i + 1 + digits;
            found.push(Placeholder { start: i, end, k: text[i + 1..end].parse().unwrap_or(0) });
            i = end;
        } else {
            i += 1;
        }
    }
    found
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

impl QueryFragment<Pg> for Cached<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !self.cache {
            out.unsafe_to_cache_prepared();
        }
        let n = self.binds.len();
        let named = |k: usize| self.placeholders.iter().any(|p| p.k == k);
        if self.placeholders.iter().any(|p| p.k == 0 || p.k > n) || !(1..=n).all(named) {
            return Err(diesel::result::Error::QueryBuilderError(
                "statement placeholders do not name each bound value ($1…$n)".into(),
            ));
        }
        let mut from = 0;
        for p in &self.placeholders {
            out.push_sql(&self.text[from..p.start]);
            self.binds[p.k - 1].walk_ast(out.reborrow())?;
            from = p.end;
        }
        out.push_sql(&self.text[from..]);
        Ok(())
    }
}

impl QueryId for Cached<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Cached<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{BigInt, Text};

    #[test]
    fn placeholders_are_found_with_their_numbers() {
        let at = |start, end, k| Placeholder { start, end, k };
        assert_eq!(
            placeholders("SELECT $1::text, $12 FROM t WHERE a = $3"),
            vec![at(7, 9, 1), at(17, 20, 12), at(38, 40, 3)]
        );
        assert_eq!(placeholders("SELECT 1"), vec![]);
        assert_eq!(placeholders("SELECT '$' || $1"), vec![at(14, 16, 1)], "a bare $ is text");
    }

    #[test]
    fn placeholders_out_of_order_or_repeated_each_get_their_value() {
        let q = Cached::new("SELECT $2::bigint, $1::text, $2::bigint")
            .bind::<Text, _>("a".to_owned())
            .bind::<BigInt, _>(5_i64);
        let sql = diesel::debug_query::<Pg, _>(&q).to_string();
        assert_eq!(sql, r#"SELECT $1::bigint, $2::text, $3::bigint -- binds: [5, "a", 5]"#);
        let unnamed = Cached::new("SELECT $2").bind::<Text, _>("a".to_owned()).bind::<Text, _>("b".to_owned());
        assert!(unnamed.is_safe_to_cache_prepared(&Pg).is_err(), "value 1 has no placeholder");
    }

    #[test]
    fn values_go_where_their_placeholders_were_and_the_statement_is_cacheable() {
        let q = Cached::new("SELECT $1::text, $2::bigint").bind::<Text, _>("a".to_owned()).bind::<BigInt, _>(5_i64);
        assert_eq!(diesel::debug_query::<Pg, _>(&q).to_string(), r#"SELECT $1::text, $2::bigint -- binds: ["a", 5]"#);
        assert!(q.is_safe_to_cache_prepared(&Pg).unwrap());
        assert!(!q.uncached().is_safe_to_cache_prepared(&Pg).unwrap());
        let wrong = Cached::new("SELECT $1, $2").bind::<Text, _>("a".to_owned());
        assert!(wrong.is_safe_to_cache_prepared(&Pg).is_err(), "one value too few");
    }
}
