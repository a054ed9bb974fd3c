//! `report.html`: the report as one self-contained page to open in a browser or send to a
//! colleague. It is `report.md` rendered (CommonMark with tables), each plot's SVG inlined
//! where the markdown shows its PNG, a small style sheet, and no network access: nothing is
//! fetched, no font, script or image from elsewhere. Reading it needs no JavaScript; a few
//! lines of it (inline, optional) make every table sortable by a click on its header.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use std::path::Path;

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:72rem;\
margin:2rem auto;padding:0 1rem;line-height:1.45;color:#1d1d1f}\
h1,h2,h3{line-height:1.2}\
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem;display:block;overflow-x:auto}\
th,td{border:1px solid #d0d0d5;padding:.3rem .55rem;text-align:left;white-space:nowrap}\
th{background:#f3f3f6;cursor:pointer}\
tr:nth-child(even) td{background:#fafafc}\
code{background:#f3f3f6;padding:0 .2rem;border-radius:3px}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}\
";

/// Sorts a table by the clicked column (numbers by value, the rest as text); a second click
/// reverses. Only progressive: without it the page reads the same.
const SORT: &str = "\
document.querySelectorAll('table').forEach(function(t){\
var h=t.tHead;if(!h)return;\
Array.prototype.forEach.call(h.rows[0].cells,function(c,i){\
c.title='sort';c.addEventListener('click',function(){\
var b=t.tBodies[0],r=Array.prototype.slice.call(b.rows),d=c.dataset.d==='1'?-1:1;\
c.dataset.d=d===1?'1':'0';\
var v=function(x){var s=x.cells[i].textContent.trim(),n=parseFloat(s);return isNaN(n)?s:n;};\
r.sort(function(x,y){var a=v(x),e=v(y);\
return (typeof a===typeof e?(a<e?-1:a>e?1:0):(typeof a==='number'?-1:1))*d;});\
r.forEach(function(x){b.appendChild(x);});});});});\
";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for `markdown` (a `report.md`), whose images `plots/<stem>.png` are replaced by
/// `dir/plots/<stem>.svg` inline (an image whose SVG cannot be read stays a link to the PNG).
pub fn render_html(title: &str, markdown: &str, dir: &Path) -> String {
    let parser = Parser::new_ext(markdown, Options::ENABLE_TABLES);
    let mut events = Vec::new();
    let mut in_image: Option<(String, String)> = None; // (dest, alt text so far)
    for event in parser {
        match (&mut in_image, event) {
            (None, Event::Start(Tag::Image { dest_url, .. })) => {
                in_image = Some((dest_url.to_string(), String::new()));
            }
            (Some((_, alt)), Event::Text(text)) => alt.push_str(&text),
            (Some(_), Event::End(TagEnd::Image)) => {
                let (dest, alt) = in_image.take().expect("in an image");
                let svg = dest
                    .strip_suffix(".png")
                    .and_then(|stem| std::fs::read_to_string(dir.join(format!("{stem}.svg"))).ok());
                let html = match svg {
                    Some(svg) => {
                        let svg = svg.trim_start_matches(|c| c != '<');
                        let svg = match svg.find("<svg") {
                            Some(i) => &svg[i..],
                            None => svg,
                        };
                        format!(
                            "<figure role=\"img\" aria-label=\"{}\">{}</figure>",
                            escape(&alt),
                            svg.trim_end()
                        )
                    }
                    None => format!("<a href=\"{}\">{}</a>", escape(&dest), escape(&alt)),
                };
                events.push(Event::InlineHtml(html.into()));
            }
            (Some(_), _) => {}
            (None, event) => events.push(event),
        }
    }
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, events.into_iter());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\
         <script>{SORT}</script>\n</body>\n</html>\n",
        escape(title)
    )
}
