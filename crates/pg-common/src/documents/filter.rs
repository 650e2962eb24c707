//! Filters and sorts as SQL text plus typed binds, over the `palisade_doc_*` functions of
//! `migrations/0003_documents.sql`. Every value and every path is a bound
//! parameter; the SQL text is built only from fixed fragments. The documents
//! table is always aliased `d`.
//!
//! Three shortcuts keep the semantics and save time: a top-level field reaches
//! one value, so its conditions use the inlinable `*_top` functions instead of
//! a path walk; `$eq`/`$in` are preceded by a jsonb containment test that
//! every match passes (see [`containment_shapes`]), which the GIN index on
//! `body` answers; and a comparison on a field of one of the collection's
//! indexes is preceded by a range over `palisade_doc_sort_key` that every
//! match passes (see [`Sql::index_range`]), which that btree index answers.
//! Each shortcut is implied by the exact test after it, so it can only make a
//! query faster.
//!
//! **Planned once.** Every value is bound, but two things are written into
//! the text, each only after it passes a strict check (otherwise it is bound
//! like a value): the collection name (`[A-Za-z][A-Za-z0-9_]{0,62}`, what
//! `check_collection_name` allows) and the path of an indexed field (segments
//! of `[A-Za-z0-9_]`, at most 64 characters each). Written in, the planner
//! prunes to the collection's partition and matches the index expression in
//! a generic plan, so a driver can prepare the statement once per connection
//! and reuse it ([`Statement::reusable`]). A statement that had to bind an
//! indexed path runs unnamed instead (planned with its values each time).

use palisade_core::documents::{FieldOp, FieldPath, Filter, SortKey, SortOrder};

use palisade_core::backend::eval::array_index;
use serde_json::{Map, Value};

use crate::json::{encode_str, encoded};

/// A bound parameter, by the Postgres type its placeholder is cast to.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// `::text`
    Text(String),
    /// `::text[]`
    TextArray(Vec<String>),
    /// `::jsonb`
    Jsonb(Value),
    /// `::jsonb[]`
    JsonbArray(Vec<Value>),
    /// `::bigint`
    BigInt(i64),
}

/// SQL text plus its parameters, numbered `$1…` in push order.
#[derive(Debug)]
pub struct Sql {
    text: String,
    binds: Vec<Bind>,
    /// Paths some btree index of the collection covers (see `Sql::index_range`).
    indexed: Vec<FieldPath>,
    /// False once something a generic plan needs as a constant had to be bound.
    reusable: bool,
}

impl Default for Sql {
    fn default() -> Self {
        Sql { text: String::new(), binds: Vec::new(), indexed: Vec::new(), reusable: true }
    }
}

/// A statement ready for a driver: [`Sql::into_statement`].
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Fixed fragments, `$n` placeholders and checked names only.
    pub text: String,
    /// The parameters in placeholder order, U+0000-encoded.
    pub binds: Vec<Bind>,
    /// A generic plan serves every call as well as a custom one: prepare it
    /// once per connection (the driver's statement cache). Otherwise run it
    /// unnamed, planned with its parameter values (a generic plan could not
    /// match a bound path to an index expression).
    pub reusable: bool,
}

impl Sql {
    /// Starts with a fixed fragment.
    pub fn new(fragment: &'static str) -> Self {
        Sql { text: fragment.to_owned(), ..Sql::default() }
    }

    /// Lets filters use the btree indexes over `paths`.
    pub fn with_indexed(mut self, paths: &[FieldPath]) -> Self {
        self.indexed = paths.to_vec();
        self
    }

    /// Appends a fixed fragment.
    pub fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    /// Appends a placeholder for `value`, followed by the fixed `cast` (e.g. `::jsonb`).
    pub fn bind(&mut self, value: Bind, cast: &'static str) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self.text.push_str(cast);
        self
    }

    /// The SQL text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends collection `name` as a string literal when it is a valid
    /// collection name (see the module docs), else as a bound `text`.
    pub fn collection(&mut self, name: &str) -> &mut Self {
        let valid = name.len() <= 63
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return self.bind(Bind::Text(name.to_owned()), "::text");
        }
        self.text.push('\'');
        self.text.push_str(name);
        self.text.push('\'');
        self
    }

    /// Appends `path` as a `text[]` literal when every segment is 1..=64 of
    /// `[A-Za-z0-9_]` (nothing to quote inside the literal), else as a bound
    /// `text[]` — and then the statement is no longer [reusable](Statement::reusable).
    fn path_constant(&mut self, path: &FieldPath) -> &mut Self {
        let plain =
            |s: &String| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !path.segments().iter().all(plain) {
            self.reusable = false;
            return self.bind(Bind::TextArray(path.segments().to_vec()), "::text[]");
        }
        // Every element quoted: unquoted, `NULL` would be a SQL null element.
        self.text.push_str("'{");
        for (i, segment) in path.segments().iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push('"');
            self.text.push_str(segment);
            self.text.push('"');
        }
        self.text.push_str("}'::text[]");
        self
    }

    /// The statement for a driver. Values are compared with stored
    /// documents, so they are returned in the same U+0000 encoding (see
    /// [`crate::json`]).
    pub fn into_statement(self) -> Statement {
        let reusable = self.reusable;
        let (text, binds) = self.into_parts();
        Statement { text, binds, reusable }
    }

    /// The SQL text and its parameters in placeholder order (see [`Sql::into_statement`]).
    pub fn into_parts(self) -> (String, Vec<Bind>) {
        let binds = self
            .binds
            .into_iter()
            .map(|b| match b {
                Bind::Text(v) => Bind::Text(encode_str(&v).into_owned()),
                Bind::TextArray(v) => Bind::TextArray(v.iter().map(|s| encode_str(s).into_owned()).collect()),
                Bind::Jsonb(v) => Bind::Jsonb(encoded(v)),
                Bind::JsonbArray(v) => Bind::JsonbArray(v.into_iter().map(encoded).collect()),
                Bind::BigInt(v) => Bind::BigInt(v),
            })
            .collect();
        (self.text, binds)
    }

    /// Appends the condition `filter` (a boolean that is never NULL).
    pub fn filter(&mut self, filter: &Filter) -> &mut Self {
        match filter {
            Filter::And(parts) => self.junction(parts, " AND ", "TRUE"),
            Filter::Or(parts) => self.junction(parts, " OR ", "FALSE"),
            Filter::Field { path, op } => self.field(path, op),
        }
    }

    fn junction(&mut self, parts: &[Filter], joiner: &'static str, empty: &'static str) -> &mut Self {
        if parts.is_empty() {
            return self.push(empty);
        }
        self.push("(");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                self.push(joiner);
            }
            self.filter(part);
        }
        self.push(")")
    }

    fn field(&mut self, path: &FieldPath, op: &FieldOp) -> &mut Self {
        // `_id` is always the string in the `id` column: let equality use the primary key.
        if path.segments() == ["_id"] {
            match op {
                FieldOp::Eq(Value::String(s)) => {
                    return self.push("d.id = ").bind(Bind::Text(s.clone()), "::text");
                }
                FieldOp::In(xs) if xs.iter().all(Value::is_string) => {
                    let ids = xs.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                    return self.push("d.id = ANY(").bind(Bind::TextArray(ids), "::text[]").push(")");
                }
                _ => {}
            }
        }
        let range = self.indexed.contains(path).then(|| IndexRange::of(op)).flatten();
        if let Some(range) = range {
            self.push("(").index_range(path, range).push(" AND ");
            return self.exact(path, op).push(")");
        }
        self.exact(path, op)
    }

    fn exact(&mut self, path: &FieldPath, op: &FieldOp) -> &mut Self {
        match op {
            FieldOp::Eq(x) => self.prefiltered(path, std::slice::from_ref(x), |s| s.eq(path, x)),
            FieldOp::Ne(x) => self.push("NOT ").eq(path, x),
            FieldOp::Gt(x) => self.compare(path, x, ", 1, 1)"),
            FieldOp::Gte(x) => self.compare(path, x, ", 0, 1)"),
            FieldOp::Lt(x) => self.compare(path, x, ", -1, -1)"),
            FieldOp::Lte(x) => self.compare(path, x, ", -1, 0)"),
            FieldOp::In(xs) if xs.is_empty() => self.push("FALSE"),
            FieldOp::Nin(xs) if xs.is_empty() => self.push("TRUE"),
            FieldOp::In(xs) => self.prefiltered(path, xs, |s| s.is_in(path, xs)),
            FieldOp::Nin(xs) => self.push("NOT ").is_in(path, xs),
            FieldOp::Exists(want) => {
                self.push(if *want { "" } else { "NOT " });
                match path.segments() {
                    [one] => self.push("(").top(one).push(" IS NOT NULL)"),
                    _ => self.push("palisade_doc_exists(").reached(path).push(")"),
                }
            }
            FieldOp::Not(ops) => {
                self.push("NOT (");
                if ops.is_empty() {
                    self.push("TRUE");
                }
                for (i, op) in ops.iter().enumerate() {
                    if i > 0 {
                        self.push(" AND ");
                    }
                    self.field(path, op);
                }
                self.push(")")
            }
        }
    }

    fn eq(&mut self, path: &FieldPath, x: &Value) -> &mut Self {
        match path.segments() {
            [one] => self.push("palisade_doc_eq_top(").top(one),
            _ => self.push("palisade_doc_eq(").reached(path),
        };
        self.push(", ").bind(Bind::Jsonb(x.clone()), "::jsonb").push(")")
    }

    /// `close` holds the accepted range of `palisade_doc_cmp`.
    fn compare(&mut self, path: &FieldPath, x: &Value, close: &'static str) -> &mut Self {
        match path.segments() {
            [one] => self.push("palisade_doc_compare_top(").top(one),
            _ => self.push("palisade_doc_compare(").reached(path),
        };
        self.push(", ").bind(Bind::Jsonb(x.clone()), "::jsonb").push(close)
    }

    /// `$in`: a candidate (the reached value, or an element of a reached
    /// array) is `=` to one of `xs`, tested against the whole list bound as
    /// one `jsonb[]` — a hashed lookup, so 10,000 values cost about what one
    /// does. `null` in `xs` also matches a missing field, as `$eq` does.
    fn is_in(&mut self, path: &FieldPath, xs: &[Value]) -> &mut Self {
        let with_null = xs.iter().any(Value::is_null);
        if with_null {
            self.push("(palisade_doc_eq(").reached(path).push(", 'null'::jsonb) OR ");
        }
        self.push("EXISTS (SELECT 1 FROM palisade_doc_candidates(").reached(path);
        self.push(") AS c WHERE c = ANY(").bind(Bind::JsonbArray(xs.to_vec()), "::jsonb[]").push("))");
        if with_null {
            self.push(")");
        }
        self
    }

    /// `((body @> s1 OR body @> s2 …) AND <exact>)` when every document that
    /// equals one of `xs` at `path` contains one of a few shapes (see
    /// [`containment_shapes`]): the GIN index on `body` finds the candidates,
    /// the exact test decides. Otherwise just `<exact>`.
    ///
    /// On a top-level field with string, number or boolean operands the
    /// shapes are the exact test (`{f: x}` or `{f: [x]}`: the field equals
    /// `x`, or is an array with an element equal to `x` — jsonb containment
    /// looks into one array level only, as `$eq` does, and compares numbers
    /// by value), so `<exact>` and its per-row function call are left out.
    fn prefiltered(&mut self, path: &FieldPath, xs: &[Value], exact: impl FnOnce(&mut Self) -> &mut Self) -> &mut Self {
        let shapes = containment_shapes(path, xs);
        if shapes.is_empty() {
            return exact(self);
        }
        let shapes_are_exact = path.segments().len() == 1
            && xs.iter().all(|x| matches!(x, Value::String(_) | Value::Number(_) | Value::Bool(_)));
        self.push("((");
        for (i, shape) in shapes.into_iter().enumerate() {
            if i > 0 {
                self.push(" OR ");
            }
            self.push("d.body @> ").bind(Bind::Jsonb(shape), "::jsonb");
        }
        if shapes_are_exact {
            return self.push("))");
        }
        self.push(") AND ");
        exact(self).push(")")
    }

    /// A condition on the index key of `path` that every document matching
    /// the operator passes, which a btree index over
    /// `palisade_doc_sort_key(body, path)` (see `migrations/0006`) answers.
    /// Keys order by type bracket, then value, and '9' marks arrays (always
    /// candidates); the bounds are inclusive because number and string keys
    /// are only monotone (float8 rounding, strings cut at 64 characters).
    fn index_range(&mut self, path: &FieldPath, range: IndexRange<'_>) -> &mut Self {
        match range {
            // One value: a list of two the planner can count, so a generic
            // plan estimates it as well as a plan made for the value.
            IndexRange::AnyOf([x]) => self
                .sort_key(path)
                .push(" IN (palisade_doc_value_key(")
                .bind(Bind::Jsonb(x.clone()), "::jsonb")
                .push("), '9')"),
            IndexRange::AnyOf(xs) => self
                .sort_key(path)
                .push(" = ANY(palisade_doc_value_keys(")
                .bind(Bind::Jsonb(Value::Array(xs.to_vec())), "::jsonb")
                .push("))"),
            IndexRange::From(x, bracket) => {
                self.push("((")
                    .sort_key(path)
                    .push(" >= palisade_doc_value_key(")
                    .bind(Bind::Jsonb(x.clone()), "::jsonb");
                self.push(") AND ").sort_key(path).push(" < ").push(bracket.end).push(") OR ").sort_key(path);
                self.push(" = '9')")
            }
            IndexRange::UpTo(x, bracket) => {
                self.push("((").sort_key(path).push(" >= ").push(bracket.start).push(" AND ").sort_key(path);
                self.push(" <= palisade_doc_value_key(").bind(Bind::Jsonb(x.clone()), "::jsonb").push(")) OR ");
                self.sort_key(path).push(" = '9')")
            }
        }
    }

    /// The index key of `path` (the expression of the collection's btree indexes).
    fn sort_key(&mut self, path: &FieldPath) -> &mut Self {
        self.push("palisade_doc_sort_key(d.body, ").path_constant(path).push(") COLLATE \"C\"")
    }

    /// The value of top-level field `name` (SQL NULL when missing).
    fn top(&mut self, name: &str) -> &mut Self {
        self.push("d.body -> ").bind(Bind::Text(name.to_owned()), "::text")
    }

    /// A `jsonb[]` of what `path` reaches in `d.body` (SQL NULL marks a missing
    /// branch). A top-level field needs no walk: the body is an object.
    fn reached(&mut self, path: &FieldPath) -> &mut Self {
        match path.segments() {
            [one] => self.push("ARRAY[").top(one).push("]"),
            segments => {
                self.push("palisade_doc_reach(d.body, ").bind(Bind::TextArray(segments.to_vec()), "::text[]").push(")")
            }
        }
    }

    /// `CROSS JOIN LATERAL` computing column `s.k<i>` = the sort value of key `i`.
    pub fn sort_values(&mut self, keys: &[SortKey]) -> &mut Self {
        self.push(" CROSS JOIN LATERAL (SELECT ");
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            match (key.path.segments(), key.order) {
                ([one], SortOrder::Asc) => self.push("palisade_doc_sort_min_top(").top(one),
                ([one], SortOrder::Desc) => self.push("palisade_doc_sort_max_top(").top(one),
                (_, SortOrder::Asc) => self.push("palisade_doc_sort_min(").reached(&key.path),
                (_, SortOrder::Desc) => self.push("palisade_doc_sort_max(").reached(&key.path),
            };
            self.push(")");
        }
        self.push(") AS s(");
        for i in 0..keys.len() {
            if i > 0 {
                self.push(", ");
            }
            self.key_column(i);
        }
        self.push(")")
    }

    /// The column `k<i>` of sort key `i` (generated from the number alone).
    fn key_column(&mut self, i: usize) -> &mut Self {
        self.text.push('k');
        self.text.push_str(&i.to_string());
        self
    }

    /// Whether any sort value is an object or array (whose order SQL cannot
    /// reproduce), over all matching rows: a window column.
    pub fn containers_flag(&mut self, keys: &[SortKey]) -> &mut Self {
        self.push("bool_or(");
        for i in 0..keys.len() {
            if i > 0 {
                self.push(" OR ");
            }
            self.push("palisade_doc_rank(s.").key_column(i).push(") IN (4, 5)");
        }
        self.push(") OVER ()")
    }

    /// `ORDER BY` the sort values (exact for scalars), then `_id` by code point.
    pub fn order_by(&mut self, keys: &[SortKey]) -> &mut Self {
        self.push(" ORDER BY ");
        for (i, key) in keys.iter().enumerate() {
            let dir = if key.order == SortOrder::Desc { " DESC" } else { "" };
            for (open, close) in SCALAR_ORDER {
                self.push(open).push("s.").key_column(i).push(close).push(dir).push(", ");
            }
        }
        self.push("d.id")
    }
}

/// The index keys of one type bracket: `start <= key < end`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bracket {
    start: &'static str,
    end: &'static str,
}

/// The key range of a condition, when an index key range implies it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IndexRange<'a> {
    /// The key of one of these values (never `null`, which matches missing fields), or '9'.
    AnyOf(&'a [Value]),
    /// From the key of the value to the end of its bracket, or '9'.
    From(&'a Value, Bracket),
    /// From the start of the value's bracket to its key, or '9'.
    UpTo(&'a Value, Bracket),
}

impl<'a> IndexRange<'a> {
    fn of(op: &'a FieldOp) -> Option<Self> {
        match op {
            FieldOp::Eq(x) if !x.is_null() => Some(IndexRange::AnyOf(std::slice::from_ref(x))),
            FieldOp::In(xs) if !xs.is_empty() && !xs.iter().any(Value::is_null) => Some(IndexRange::AnyOf(xs)),
            FieldOp::Gt(x) | FieldOp::Gte(x) => Some(IndexRange::From(x, Self::bracket(x)?)),
            FieldOp::Lt(x) | FieldOp::Lte(x) => Some(IndexRange::UpTo(x, Self::bracket(x)?)),
            _ => None,
        }
    }

    /// The keys of `x`'s type, for the types comparisons match within.
    fn bracket(x: &Value) -> Option<Bracket> {
        match x {
            Value::Number(_) => Some(Bracket { start: "'2'", end: "'3'" }),
            Value::String(_) => Some(Bracket { start: "'3'", end: "'4'" }),
            Value::Bool(_) => Some(Bracket { start: "'8'", end: "'9'" }),
            _ => None,
        }
    }
}

/// Deepest path the containment prefilter covers (shapes double per segment).
const PREFILTER_MAX_DEPTH: usize = 3;
/// Most containment shapes one condition tests.
const PREFILTER_MAX_SHAPES: usize = 32;

/// Objects one of which every document whose `path` reaches a value equal to
/// (or an array with an element equal to) one of `xs` contains, by jsonb `@>`
/// — a superset of the matches, never missing one. Empty when there is no
/// such small set: a `null` operand (it matches missing fields), a deep path,
/// too many operands.
///
/// Below the body (an object), each segment is a key of an object or, in an
/// array, reaches into the elements (`[{"seg": …}]` for a name, `[…]` for an
/// index); the value is `x` itself or an array holding `x`.
fn containment_shapes(path: &FieldPath, xs: &[Value]) -> Vec<Value> {
    let segments = path.segments();
    if xs.is_empty()
        || xs.iter().any(Value::is_null)
        || segments.len() > PREFILTER_MAX_DEPTH
        || xs.len() << segments.len() > PREFILTER_MAX_SHAPES
    {
        return Vec::new();
    }
    let mut shapes: Vec<Value> = xs.iter().flat_map(|x| [x.clone(), Value::Array(vec![x.clone()])]).collect();
    for (depth, seg) in segments.iter().enumerate().rev() {
        let keyed = |s: Value| Value::Object(Map::from_iter([(seg.clone(), s)]));
        shapes = shapes
            .into_iter()
            .flat_map(|s| {
                let in_array = (depth > 0).then(|| match array_index(seg) {
                    Some(_) => Value::Array(vec![s.clone()]),
                    None => Value::Array(vec![keyed(s.clone())]),
                });
                std::iter::once(keyed(s)).chain(in_array)
            })
            .collect();
    }
    shapes
}

/// Type rank, then the value within each scalar type.
const SCALAR_ORDER: [(&str, &str); 4] = [
    ("palisade_doc_rank(", ")"),
    ("palisade_doc_num(", ")"),
    ("palisade_doc_str(", ") COLLATE \"C\""),
    ("palisade_doc_bool(", ")"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(filter: Value) -> Sql {
        let mut sql = Sql::default();
        sql.filter(&Filter::parse(&filter).unwrap());
        sql
    }

    #[test]
    fn values_and_unindexed_paths_are_bound_never_inlined() {
        let sql = translate(json!({"a.b": "x'); DROP TABLE documents; --", "c": {"$gt": 5}}));
        assert!(!sql.text().contains("DROP") && !sql.text().contains("'a'"), "{}", sql.text());
        assert!(sql.text().starts_with(
            "(((d.body @> $1::jsonb OR d.body @> $2::jsonb OR d.body @> $3::jsonb OR d.body @> $4::jsonb) \
             AND palisade_doc_eq(palisade_doc_reach(d.body, $5::text[]), $6::jsonb)) AND "
        ));
        assert!(sql.text().ends_with("palisade_doc_compare_top(d.body -> $7::text, $8::jsonb, 1, 1))"));
        assert_eq!(sql.binds[4], Bind::TextArray(vec!["a".into(), "b".into()]));
        assert_eq!(sql.binds[5], Bind::Jsonb(json!("x'); DROP TABLE documents; --")));
    }

    #[test]
    fn binds_come_out_in_the_stored_u0000_encoding() {
        let filter = json!({"_id": "a\u{0}", "k.x": {"$in": ["\u{1}"]}, "m": {"\u{0}": 1}});
        let (text, binds) = translate(filter).into_parts();
        assert!(text.starts_with("(d.id = $1::text AND "), "{text}");
        assert_eq!(binds[0], Bind::Text("a\u{1}\u{1}".into()));
        assert!(binds.contains(&Bind::JsonbArray(vec![json!("\u{1}\u{2}")])), "{binds:?}");
        assert!(binds.contains(&Bind::Jsonb(json!({"\u{1}\u{1}": 1}))), "{binds:?}");
        assert!(binds.contains(&Bind::TextArray(vec!["k".into(), "x".into()])), "{binds:?}");
    }

    #[test]
    fn containment_shapes_cover_objects_arrays_and_indexes() {
        let shapes = |path: &str, xs: &[Value]| containment_shapes(&FieldPath::parse(path).unwrap(), xs);
        assert_eq!(shapes("a", &[json!(5)]), vec![json!({"a": 5}), json!({"a": [5]})]);
        assert_eq!(
            shapes("a.b", &[json!("x")]),
            vec![
                json!({"a": {"b": "x"}}),
                json!({"a": [{"b": "x"}]}),
                json!({"a": {"b": ["x"]}}),
                json!({"a": [{"b": ["x"]}]}),
            ]
        );
        assert!(shapes("a.0", &[json!(1)]).contains(&json!({"a": [[1]]})), "an index reaches array elements");
        assert!(shapes("a.0", &[json!(1)]).contains(&json!({"a": {"0": 1}})), "and names object keys");
        assert!(shapes("a", &[json!(null)]).is_empty(), "null matches missing fields");
        assert!(shapes("a.b.c.d", &[json!(1)]).is_empty(), "too deep");
        assert_eq!(shapes("a.b.c", &[json!(1), json!(2), json!(3), json!(4)]).len(), 32);
        assert!(shapes("a.b.c", &[json!(1), json!(2), json!(3), json!(4), json!(5)]).is_empty(), "too many");
    }

    #[test]
    fn indexed_fields_get_a_key_range_before_the_exact_test() {
        let indexed = [FieldPath::parse("seen").unwrap()];
        let translate_indexed = |filter: Value| {
            let mut sql = Sql::default().with_indexed(&indexed);
            sql.filter(&Filter::parse(&filter).unwrap());
            sql
        };
        let key = "palisade_doc_sort_key(d.body, '{\"seen\"}'::text[]) COLLATE \"C\"";
        let sql = translate_indexed(json!({"seen": {"$gt": "2026"}}));
        assert!(
            sql.text().starts_with(&format!("((({key} >= palisade_doc_value_key($1::jsonb) AND ")),
            "{}",
            sql.text()
        );
        assert!(sql.text().contains("COLLATE \"C\" < '4') OR "), "strings end at the object bracket: {}", sql.text());
        assert!(sql.text().contains(" = '9') AND palisade_doc_compare_top("), "{}", sql.text());
        let sql = translate_indexed(json!({"seen": {"$lte": 5}}));
        assert!(sql.text().contains(" >= '2' AND "), "numbers start their bracket: {}", sql.text());
        let sql = translate_indexed(json!({"seen": {"$in": ["a", 1]}}));
        assert!(sql.text().starts_with(&format!("({key} = ANY(palisade_doc_value_keys($1::jsonb)) AND ")));
        assert!(sql.into_statement().reusable, "a generic plan matches the literal path to the index");
        let sql = translate_indexed(json!({"seen": "a"}));
        assert!(
            sql.text().starts_with(&format!("({key} IN (palisade_doc_value_key($1::jsonb), '9') AND ")),
            "{}",
            sql.text()
        );
        // null matches missing fields, which have no key; unindexed fields and negations take no shortcut.
        assert!(!translate_indexed(json!({"seen": null})).text().contains("sort_key"));
        assert!(!translate_indexed(json!({"other": {"$gt": 1}})).text().contains("sort_key"));
        assert!(!translate_indexed(json!({"seen": {"$ne": 1}})).text().contains("sort_key"));
    }

    #[test]
    fn indexed_path_elements_are_quoted_so_null_stays_a_name() {
        let path = FieldPath::parse("a.NULL").unwrap();
        let mut sql = Sql::default().with_indexed(std::slice::from_ref(&path));
        sql.filter(&Filter::parse(&json!({"a.NULL": {"$gt": 1}})).unwrap());
        assert!(sql.text().contains("palisade_doc_sort_key(d.body, '{\"a\",\"NULL\"}'::text[])"), "{}", sql.text());
    }

    #[test]
    fn an_indexed_path_that_needs_quoting_is_bound_and_planned_per_call() {
        let odd = FieldPath::parse("we'ird").unwrap();
        let mut sql = Sql::default().with_indexed(std::slice::from_ref(&odd));
        sql.filter(&Filter::parse(&json!({"we'ird": {"$gt": 1}})).unwrap());
        assert!(sql.text().contains("palisade_doc_sort_key(d.body, $1::text[])"), "{}", sql.text());
        assert!(!sql.text().contains("we'ird"), "{}", sql.text());
        let statement = sql.into_statement();
        assert!(!statement.reusable);
        assert_eq!(statement.binds[0], Bind::TextArray(vec!["we'ird".into()]));
    }

    #[test]
    fn id_equality_uses_the_id_column() {
        assert_eq!(translate(json!({"_id": "x"})).text(), "d.id = $1::text");
        assert_eq!(translate(json!({"_id": {"$in": ["x", "y"]}})).text(), "d.id = ANY($1::text[])");
        assert_eq!(translate(json!({"_id": 5})).text(), "((d.body @> $1::jsonb OR d.body @> $2::jsonb))");
    }

    #[test]
    fn containment_alone_decides_scalar_equality_on_top_level_fields() {
        assert_eq!(translate(json!({"a": "x"})).text(), "((d.body @> $1::jsonb OR d.body @> $2::jsonb))");
        let in_list = translate(json!({"a": {"$in": [1, true]}}));
        assert!(!in_list.text().contains("EXISTS"), "{}", in_list.text());
        // Objects match by containment, not equality; paths may cross arrays twice: the exact test stays.
        assert!(translate(json!({"a": {"b": 1}})).text().contains("palisade_doc_eq_top("));
        assert!(translate(json!({"a.b": 1})).text().contains("palisade_doc_eq("));
        assert!(translate(json!({"a": {"$in": [1, {"b": 1}]}})).text().contains("EXISTS"));
    }

    #[test]
    fn negations_and_empty_lists() {
        assert_eq!(translate(json!({})).text(), "TRUE");
        assert_eq!(translate(json!({"a": {"$in": []}})).text(), "FALSE");
        assert_eq!(translate(json!({"a": {"$nin": []}})).text(), "TRUE");
        assert_eq!(
            translate(json!({"a": {"$not": {"$exists": true}}})).text(),
            "NOT ((d.body -> $1::text IS NOT NULL))"
        );
    }

    #[test]
    fn sort_orders_by_rank_then_scalar_value_then_id() {
        let mut sql = Sql::default();
        sql.order_by(&[SortKey::desc("a").unwrap()]);
        assert_eq!(
            sql.text(),
            " ORDER BY palisade_doc_rank(s.k0) DESC, palisade_doc_num(s.k0) DESC, \
             palisade_doc_str(s.k0) COLLATE \"C\" DESC, palisade_doc_bool(s.k0) DESC, d.id"
        );
    }
}
