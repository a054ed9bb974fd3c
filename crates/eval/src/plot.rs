//! Plots as PNG and SVG: line plots (exact match against length, perplexity against context,
//! decay curves) and heatmaps (an encoding table, a bias matrix) with a colour bar.
//!
//! Every figure is drawn twice by plotters, once into an RGB buffer that is encoded as PNG and
//! once into an SVG string, and each file is written atomically
//! (`ordo_train::run_dir::write_atomic`: a temporary file of a unique name, then a rename).
//! Text uses DejaVu Sans, embedded in the binary (`data/fonts/`, license beside it) and registered
//! with plotters' `ab_glyph` renderer as `sans-serif`: no system font or fontconfig is needed.
//!
//! A series keeps its colour across plots: each encoding of ordo has a fixed colour, by its place
//! in the `schemes!` list ([`encoding_colour`]); other names take the remaining colours of the
//! palette in order.

use ordo_train::run_dir::write_atomic;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The embedded font (DejaVu Sans; Bitstream Vera license in `data/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
static REGISTER: Once = Once::new();

/// Registers the embedded font with plotters once; every drawing function calls it first.
pub fn ensure_font() {
    REGISTER.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            if register_font(FAMILY, style, FONT).is_err() {
                panic!("the embedded DejaVu Sans font does not parse");
            }
        }
    });
}

/// Default size of a line plot, in pixels.
pub const LINE_PLOT_SIZE: (u32, u32) = (960, 600);
/// Default size of a heatmap, in pixels.
pub const HEATMAP_SIZE: (u32, u32) = (900, 720);

/// The palette: ordo's encodings take its colours by their position in
/// [`PositionalEncodingConfig::KINDS`](ordo_model::PositionalEncodingConfig::KINDS), so a
/// scheme keeps its colour in every plot and a new scheme gets the next one without an edit
/// here; other names take the colours after the encodings', in order.
const PALETTE: [RGBColor; 24] = [
    RGBColor(127, 127, 127),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 0),
    RGBColor(31, 60, 120),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(158, 218, 229),
    RGBColor(219, 219, 141),
    RGBColor(255, 152, 150),
    RGBColor(174, 199, 232),
    RGBColor(99, 99, 99),
    RGBColor(140, 109, 49),
    RGBColor(82, 84, 163),
];

fn kinds() -> &'static [&'static str] {
    ordo_model::PositionalEncodingConfig::KINDS
}

/// The fixed colour of one of ordo's encodings (`None` for other names).
pub fn encoding_colour(name: &str) -> Option<RGBColor> {
    let index = kinds().iter().position(|k| *k == name)?;
    PALETTE.get(index).copied()
}

/// Colours for names that are not encodings, used in order.
fn extra() -> &'static [RGBColor] {
    &PALETTE[kinds().len().min(PALETTE.len())..]
}

/// One colour per name: an encoding's fixed colour, else the next unused extra colour, else a
/// hue spread by the golden angle.
pub fn series_colours<S: AsRef<str>>(names: &[S]) -> Vec<RGBColor> {
    let fixed: Vec<Option<RGBColor>> = names.iter().map(|n| encoding_colour(n.as_ref())).collect();
    let used = fixed.clone();
    let mut free = extra().iter().filter(move |c| !used.contains(&Some(**c)));
    let mut generated = 0usize;
    fixed
        .into_iter()
        .map(|c| {
            c.or_else(|| free.next().copied()).unwrap_or_else(|| {
                generated += 1;
                let h = (generated as f64 * 0.618_033_988_75).fract();
                let RGBAColor(r, g, b, _) = HSLColor(h, 0.65, 0.42).to_rgba();
                RGBColor(r, g, b)
            })
        })
        .collect()
}

/// A line plot. A non-finite `y` breaks its series' line (an n/a point is not drawn).
#[derive(Debug, Clone)]
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// `(name, points)`; the name is the legend entry and picks the colour.
    pub series: &'a [(String, Vec<(f64, f64)>)],
    /// Optional shaded bands, `bands[i]` for `series[i]` as `(x, low, high)` points (e.g. a 95 %
    /// interval), drawn under the lines in the series' colour; a non-finite bound breaks the
    /// band, and an isolated point is drawn as an error bar. Empty = no bands.
    pub bands: &'a [Vec<(f64, f64, f64)>],
    /// A dashed vertical line at `x`, labelled (e.g. `(16.0, "train L")`).
    pub marker_x: Option<(f64, &'a str)>,
    /// Axis ranges; `None` = the data's range (with a margin for `y`).
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Logarithmic axes (points with a coordinate <= 0 are then left out).
    pub log_x: bool,
    pub log_y: bool,
    /// Draw a dot at every point (always drawn for isolated points).
    pub points: bool,
    pub size: (u32, u32),
}

impl Default for LinePlot<'_> {
    fn default() -> Self {
        Self {
            title: "",
            x_label: "",
            y_label: "",
            series: &[],
            bands: &[],
            marker_x: None,
            x_range: None,
            y_range: None,
            log_x: false,
            log_y: false,
            points: true,
            size: LINE_PLOT_SIZE,
        }
    }
}

/// How values map to colours in a heatmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMap {
    /// `Diverging` (symmetric around 0) when the values have both signs, else `Sequential`.
    #[default]
    Auto,
    /// Viridis, low = dark blue, high = yellow.
    Sequential,
    /// Blue (negative), white (0), red (positive).
    Diverging,
}

/// A heatmap of a matrix given by rows: row 0 at the top, column 0 at the left. Non-finite
/// values (e.g. masked `-inf` biases) are grey. Matrices larger than `max_cells` per axis are
/// averaged over blocks.
#[derive(Debug, Clone)]
pub struct Heatmap<'a> {
    pub title: &'a str,
    /// Label of the columns (x) and the rows (y).
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub values: &'a [Vec<f64>],
    /// Label of the colour bar.
    pub value_label: &'a str,
    /// Colour scale range; `None` = the finite values' range (symmetric for `Diverging`).
    pub range: Option<(f64, f64)>,
    pub color_map: ColorMap,
    pub max_cells: usize,
    pub size: (u32, u32),
}

impl Default for Heatmap<'_> {
    fn default() -> Self {
        Self {
            title: "",
            x_label: "",
            y_label: "",
            values: &[],
            value_label: "",
            range: None,
            color_map: ColorMap::Auto,
            max_cells: 256,
            size: HEATMAP_SIZE,
        }
    }
}

/// Writes `<path_without_ext>.png` and `.svg`; returns both paths.
pub fn line_plot(path_without_ext: &Path, plot: &LinePlot) -> Result<Vec<PathBuf>, PlotError> {
    let log_axis = |axis| PlotError::LogAxis {
        title: plot.title.to_string(),
        axis,
    };
    if plot.log_x && plot.x_range.is_some_and(|(a, _)| a <= 0.0) {
        return Err(log_axis('x'));
    }
    if plot.log_y && plot.y_range.is_some_and(|(a, _)| a <= 0.0) {
        return Err(log_axis('y'));
    }
    write_figure(path_without_ext, plot.size, plot)
}

/// Heatmaps side by side on one figure: `panels` in row-major order, `cols` to a row (every
/// layer x head of a model's attention, one layer a row).
pub struct HeatmapGrid<'a> {
    pub title: &'a str,
    pub panels: &'a [Heatmap<'a>],
    pub cols: usize,
    /// The size of one panel.
    pub panel_size: (u32, u32),
}

impl Figure for HeatmapGrid<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let rows = self.panels.len().div_ceil(self.cols);
        let area = root
            .margin(10, 0, 0, 0)
            .titled(self.title, font(26.0))
            .map_err(err)?;
        let cells = area.split_evenly((rows, self.cols));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            panel.draw(cell)?;
        }
        Ok(())
    }
}

/// Writes the grid as `<path_without_ext>.png` and `.svg`; returns both paths.
pub fn heatmap_grid(
    path_without_ext: &Path,
    grid: &HeatmapGrid,
) -> Result<Vec<PathBuf>, PlotError> {
    if grid.panels.is_empty() || grid.cols == 0 {
        return Err(PlotError::NotRectangular(grid.title.to_string()));
    }
    for map in grid.panels {
        let cols = map.values.first().map_or(0, Vec::len);
        if cols == 0 || map.values.iter().any(|r| r.len() != cols) {
            return Err(PlotError::NotRectangular(map.title.to_string()));
        }
    }
    let rows = grid.panels.len().div_ceil(grid.cols) as u32;
    let (w, h) = grid.panel_size;
    let size = (w * grid.cols as u32, h * rows + 40);
    write_figure(path_without_ext, size, grid)
}

/// Writes `<path_without_ext>.png` and `.svg`; returns both paths.
pub fn heatmap(path_without_ext: &Path, map: &Heatmap) -> Result<Vec<PathBuf>, PlotError> {
    let cols = map.values.first().map_or(0, Vec::len);
    if cols == 0 || map.values.iter().any(|r| r.len() != cols) {
        return Err(PlotError::NotRectangular(map.title.to_string()));
    }
    write_figure(path_without_ext, map.size, map)
}

/// A figure that cannot be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A log axis whose range starts at or below 0; `axis` is `x` or `y`.
    #[error("{title}: a log {axis} axis needs {axis} > 0")]
    LogAxis { title: String, axis: char },
    /// The heatmap's title.
    #[error("{0}: a heatmap needs a non-empty rectangular matrix")]
    NotRectangular(String),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// plotters' or the PNG encoder's message (their error types are generic over the backend).
    #[error("{0}")]
    Draw(String),
}

/// A figure that can be drawn on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut p = stem.as_os_str().to_owned();
    p.push(".");
    p.push(ext);
    PathBuf::from(p)
}

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PlotError {
    let path = path.to_path_buf();
    move |cause| PlotError::Io { path, cause }
}

fn write_figure(
    stem: &Path,
    (w, h): (u32, u32),
    fig: &impl Figure,
) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font();
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(&rgb).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    let png_path = with_ext(stem, "png");
    let svg_path = with_ext(stem, "svg");
    write_atomic(&png_path, &png_bytes).map_err(io_err(&png_path))?;
    write_atomic(&svg_path, svg.as_bytes()).map_err(io_err(&svg_path))?;
    Ok(vec![png_path, svg_path])
}

/// Tick labels: up to 3 decimals, trailing zeros trimmed; scientific outside [1e-3, 1e5).
pub fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e5 || v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Range of finite values (allowed by `keep`), padded by `pad` of its width; `(0, 1)` if none.
fn data_range(values: impl Iterator<Item = f64>, pad: f64, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        if hi <= lo {
            return (lo / 2.0, hi * 2.0);
        }
        let f = (hi / lo).powf(pad);
        return (lo / f, hi * f);
    }
    if hi <= lo {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

impl Figure for LinePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let xs = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().filter(|q| q.1.is_finite()).map(|q| q.0))
            .chain(self.marker_x.map(|m| m.0));
        // A log x axis gets a little room, so that points at its ends are not on the frame.
        let x_pad = if self.log_x { 0.03 } else { 0.0 };
        let (x0, x1) = self
            .x_range
            .unwrap_or_else(|| data_range(xs, x_pad, self.log_x));
        let ys = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .chain(self.bands.iter().flatten().flat_map(|b| [b.1, b.2]));
        let (y0, y1) = self
            .y_range
            .unwrap_or_else(|| data_range(ys, 0.05, self.log_y));
        let (x0, x1) = if x1 > x0 {
            (x0, x1)
        } else {
            (x0 - 0.5, x0 + 0.5)
        };
        let (x0, y0) = (
            with_a_decade(x0, x1, self.log_x),
            with_a_decade(y0, y1, self.log_y),
        );
        let lin = |a: f64, b: f64| RangedCoordf64::from(a..b);
        let log = |a: f64, b: f64| LogCoord::<f64>::from((a..b).log_scale());
        let y = (y0, y1);
        match (self.log_x, self.log_y) {
            (false, false) => draw_lines(root, self, lin(x0, x1), lin(y0, y1), y),
            (true, false) => draw_lines(root, self, log(x0, x1), lin(y0, y1), y),
            (false, true) => draw_lines(root, self, lin(x0, x1), log(y0, y1), y),
            (true, true) => draw_lines(root, self, log(x0, x1), log(y0, y1), y),
        }
    }
}

/// The lower end of a log axis, lowered to the power of ten below it when `[lo, hi]` holds none:
/// plotters labels a log axis from its first power of ten, so a range such as `[2.3, 8]` would
/// have no tick label at all. Unchanged for a linear axis.
fn with_a_decade(lo: f64, hi: f64, log: bool) -> f64 {
    if !log || lo <= 0.0 || !lo.is_finite() {
        return lo;
    }
    let below = 10f64.powi(lo.log10().floor() as i32);
    let above = 10f64.powi(lo.log10().ceil() as i32);
    if above <= hi {
        lo
    } else {
        // Slightly under the power, so that plotters' `ceil(log10(lo))` lands on it.
        below * (1.0 - 1e-9)
    }
}

/// The legend panel's width for these names.
fn legend_width(names: &[&str]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as u32;
    (longest * 9 + 60).clamp(110, 340)
}

/// Draws the legend (a coloured line and the name per entry) at the top of `area`.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(&str, RGBColor)],
    top: i32,
) -> Result<(), PlotError> {
    for (i, (name, colour)) in entries.iter().enumerate() {
        let y = top + 12 + 24 * i as i32;
        area.draw(&PathElement::new(
            vec![(6, y), (34, y)],
            colour.stroke_width(3),
        ))
        .map_err(err)?;
        area.draw(&Circle::new((20, y), 3, colour.filled()))
            .map_err(err)?;
        area.draw(&Text::new(name.to_string(), (42, y - 6), font(15.0)))
            .map_err(err)?;
    }
    Ok(())
}

fn draw_lines<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    plot: &LinePlot,
    x: X,
    y: Y,
    (y0, y1): (f64, f64),
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let names: Vec<&str> = plot.series.iter().map(|(n, _)| n.as_str()).collect();
    let colours = series_colours(&names);
    let area = root.titled(plot.title, font(22.0)).map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    let legend_w = if names.is_empty() {
        0
    } else {
        legend_width(&names)
    };
    let (main, legend) = area.split_horizontally(w.saturating_sub(legend_w));
    let mut chart = ChartBuilder::on(&main)
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .x_label_formatter(&|v: &f64| format_tick(*v))
        .y_label_formatter(&|v: &f64| format_tick(*v))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;
    if let Some((mx, label)) = plot.marker_x {
        let style = BLACK.mix(0.6).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(vec![(mx, y0), (mx, y1)], 8, 6, style))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((mx, y1)) + Text::new(label.to_string(), (5, 4), font(14.0)),
            ))
            .map_err(err)?;
    }
    let usable = |p: &(f64, f64)| {
        p.0.is_finite()
            && p.1.is_finite()
            && (!plot.log_x || p.0 > 0.0)
            && (!plot.log_y || p.1 > 0.0)
    };
    // Bands first, so that every line is drawn over them.
    for (band, colour) in plot.bands.iter().zip(&colours) {
        let mut segments: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new()];
        for b in band {
            if usable(&(b.0, b.1)) && usable(&(b.0, b.2)) {
                segments.last_mut().expect("one segment").push(*b);
            } else if !segments.last().expect("one segment").is_empty() {
                segments.push(Vec::new());
            }
        }
        for segment in segments.iter().filter(|s| !s.is_empty()) {
            if segment.len() == 1 {
                let (x, lo, hi) = segment[0];
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        colour.mix(0.5).stroke_width(2),
                    )))
                    .map_err(err)?;
                continue;
            }
            // The outline: along the upper bound, then back along the lower one.
            let outline: Vec<(f64, f64)> = segment
                .iter()
                .map(|b| (b.0, b.2))
                .chain(segment.iter().rev().map(|b| (b.0, b.1)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.18))))
                .map_err(err)?;
        }
    }
    for ((_, points), colour) in plot.series.iter().zip(&colours) {
        // Consecutive usable points form a segment; an unusable point breaks the line.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for p in points {
            if usable(p) {
                segments.last_mut().expect("one segment").push(*p);
            } else if !segments.last().expect("one segment").is_empty() {
                segments.push(Vec::new());
            }
        }
        for segment in segments.iter().filter(|s| !s.is_empty()) {
            chart
                .draw_series(LineSeries::new(segment.clone(), colour.stroke_width(2)))
                .map_err(err)?;
            if plot.points || segment.len() == 1 {
                chart
                    .draw_series(segment.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                    .map_err(err)?;
            }
        }
    }
    let entries: Vec<(&str, RGBColor)> = names.iter().copied().zip(colours).collect();
    draw_legend(&legend, &entries, 24)
}

/// Viridis at `t` in [0, 1] (linear interpolation between 9 stops).
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 45, 123),
        (59, 82, 139),
        (44, 114, 142),
        (33, 145, 140),
        (40, 174, 128),
        (94, 201, 98),
        (173, 220, 48),
        (253, 231, 37),
    ];
    interpolate(&STOPS, t)
}

/// Blue, white, red at `t` in [0, 1] (0.5 = white).
pub fn diverging(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (33, 102, 172),
        (146, 197, 222),
        (247, 247, 247),
        (244, 165, 130),
        (178, 24, 43),
    ];
    interpolate(&STOPS, t)
}

fn interpolate(stops: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let pos = t * (stops.len() - 1) as f64;
    let i = (pos.floor() as usize).min(stops.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (stops[i], stops[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

const MASKED: RGBColor = RGBColor(200, 200, 200);

/// Block-averages `values` to at most `max` rows and columns; returns the matrix and the block
/// size along rows and columns.
fn pool(values: &[Vec<f64>], max: usize) -> (Vec<Vec<f64>>, usize, usize) {
    let rows = values.len();
    let cols = values[0].len();
    let max = max.max(1);
    let (br, bc) = (rows.div_ceil(max), cols.div_ceil(max));
    if br == 1 && bc == 1 {
        return (values.to_vec(), 1, 1);
    }
    let pooled = (0..rows.div_ceil(br))
        .map(|i| {
            (0..cols.div_ceil(bc))
                .map(|j| {
                    let cells: Vec<f64> = values[i * br..((i + 1) * br).min(rows)]
                        .iter()
                        .flat_map(|r| r[j * bc..((j + 1) * bc).min(cols)].iter().copied())
                        .filter(|v| v.is_finite())
                        .collect();
                    if cells.is_empty() {
                        f64::NAN
                    } else {
                        cells.iter().sum::<f64>() / cells.len() as f64
                    }
                })
                .collect()
        })
        .collect();
    (pooled, br, bc)
}

impl Figure for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let rows = self.values.len();
        let cols = self.values[0].len();
        let finite = self
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let map = match self.color_map {
            ColorMap::Auto if lo < 0.0 && hi > 0.0 => ColorMap::Diverging,
            ColorMap::Auto => ColorMap::Sequential,
            m => m,
        };
        let (vmin, vmax) = match self.range {
            Some(r) => r,
            None if !lo.is_finite() => (0.0, 1.0),
            None if map == ColorMap::Diverging => {
                let m = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
                (-m, m)
            }
            None if hi > lo => (lo, hi),
            None => (lo - 0.5, lo + 0.5),
        };
        let colour = |v: f64| {
            if !v.is_finite() {
                return MASKED;
            }
            let t = (v - vmin) / (vmax - vmin);
            match map {
                ColorMap::Diverging => diverging(t),
                _ => viridis(t),
            }
        };
        let area = root.titled(self.title, font(22.0)).map_err(err)?;
        let (w, _) = area.dim_in_pixel();
        let (main, bar) = area.split_horizontally(w.saturating_sub(150));
        let (rows_f, cols_f) = (rows as f64, cols as f64);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(64)
            // Row r spans y in [-(r + 1), -r]: row 0 at the top, round tick labels.
            .build_cartesian_2d(0f64..cols_f, -rows_f..0f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(font(14.0))
            .axis_desc_style(font(16.0))
            .x_label_formatter(&|v: &f64| format_tick(*v))
            .y_label_formatter(&|v: &f64| format_tick(-*v))
            .draw()
            .map_err(err)?;
        let (pooled, br, bc) = pool(self.values, self.max_cells);
        let cells = pooled.iter().enumerate().flat_map(|(i, row)| {
            row.iter().enumerate().map(move |(j, &v)| {
                let x = ((j * bc) as f64, (((j + 1) * bc).min(cols)) as f64);
                let top = -((i * br) as f64);
                let bottom = -((((i + 1) * br).min(rows)) as f64);
                Rectangle::new([(x.0, top), (x.1, bottom)], colour(v).filled())
            })
        });
        chart.draw_series(cells).map_err(err)?;
        // The colour bar: a column of 128 steps with the value axis on its left.
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(12)
            .margin_bottom(64)
            .margin_right(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, vmin..vmax)
            .map_err(err)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(self.value_label)
            .label_style(font(13.0))
            .axis_desc_style(font(15.0))
            .y_label_formatter(&|v: &f64| format_tick(*v))
            .draw()
            .map_err(err)?;
        let steps = 128;
        let step = (vmax - vmin) / steps as f64;
        scale
            .draw_series((0..steps).map(|k| {
                let v0 = vmin + k as f64 * step;
                Rectangle::new(
                    [(0.0, v0), (1.0, v0 + step)],
                    colour(v0 + step / 2.0).filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    }
}
