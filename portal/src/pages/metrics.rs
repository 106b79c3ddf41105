//! An app's metrics on a stage over time, from the observations its podgroup recorded: CPU and
//! memory (% of the allocation per replica) and replicas (ready, desired) as SVG charts drawn on
//! the server, each autoscale decision marked, its reason on hover (an SVG `<title>`).

use maud::{Markup, html};
use neo_protocol::pb;

use crate::respond::encode;

/// One measured value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The value.
    pub value: f64,
}

/// A decision of the autoscaler (or a scale change), marked on every chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// When (Unix ms).
    pub at_ms: u64,
    /// What it did and why.
    pub label: String,
}

/// The series of one podgroup over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// CPU, % of the allocation per replica.
    pub cpu: Vec<Point>,
    /// Memory, % of the allocation per replica.
    pub memory: Vec<Point>,
    /// Ready replicas when sampled.
    pub ready: Vec<Point>,
    /// Desired replicas, as they changed.
    pub desired: Vec<Point>,
    /// The decisions.
    pub marks: Vec<Mark>,
}

impl Series {
    /// Starts from the desired count at the window's start.
    pub fn starting(at_ms: u64, desired: u32) -> Self {
        Self {
            desired: vec![Point {
                at_ms,
                value: f64::from(desired),
            }],
            ..Self::default()
        }
    }

    /// Adds what a podgroup event at `at_ms` says.
    pub fn add(&mut self, at_ms: u64, event: &pb::PodgroupEvent) {
        use pb::podgroup_event::Event;
        let mut observed = |o: &pb::Observation| {
            let at_ms = if o.at_ms == 0 { at_ms } else { o.at_ms };
            self.cpu.push(Point {
                at_ms,
                value: o.cpu_percent,
            });
            self.memory.push(Point {
                at_ms,
                value: o.memory_percent,
            });
            self.ready.push(Point {
                at_ms,
                value: f64::from(o.ready_replicas),
            });
        };
        match &event.event {
            Some(Event::Observed(e)) => {
                if let Some(o) = &e.observation {
                    observed(o);
                }
            }
            Some(Event::Autoscaled(e)) => {
                self.desired.push(Point {
                    at_ms,
                    value: f64::from(e.to),
                });
                self.marks.push(Mark {
                    at_ms,
                    label: format!("autoscaled {} → {}: {}", e.from, e.to, e.reason),
                });
            }
            Some(Event::Scaled(e)) => {
                self.desired.push(Point {
                    at_ms,
                    value: f64::from(e.to),
                });
                self.marks.push(Mark {
                    at_ms,
                    label: format!("scaled {} → {}: {}", e.from, e.to, e.reason),
                });
            }
            Some(Event::PolicySet(e)) => {
                self.desired.push(Point {
                    at_ms,
                    value: f64::from(e.desired),
                });
            }
            Some(Event::ResourcesRaised(e)) => {
                let (from, to) = (e.from.unwrap_or_default(), e.to.unwrap_or_default());
                self.marks.push(Mark {
                    at_ms,
                    label: format!(
                        "resources raised {}m/{} MiB → {}m/{} MiB: {}",
                        from.cpu_millis, from.memory_mib, to.cpu_millis, to.memory_mib, e.reason
                    ),
                });
            }
            _ => {}
        }
    }
}

/// The chart's drawing area, in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;

/// One chart of `lines` (name, class, points) between `from_ms` and `to_ms`, with `marks`.
pub fn chart(
    id: &str,
    title: &str,
    unit: &str,
    lines: &[(&str, &str, &[Point])],
    marks: &[Mark],
    (from_ms, to_ms): (u64, u64),
    floor_max: f64,
) -> Markup {
    let max = lines
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.value))
        .fold(floor_max, f64::max);
    let span = to_ms.saturating_sub(from_ms).max(1) as f64;
    let x = |at: u64| LEFT + (at.saturating_sub(from_ms) as f64 / span) * (WIDTH - LEFT);
    let y = |v: f64| (HEIGHT - BOTTOM) - (v / max) * (HEIGHT - BOTTOM - 8.0);
    let count: usize = lines.iter().map(|(_, _, p)| p.len()).sum();
    html! {
        figure.chart id=(id) {
            figcaption { (title) span.hint { " (" (count) " points)" } }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
                line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
                line.axis x1=(LEFT) y1="4" x2=(LEFT) y2=(HEIGHT - BOTTOM) {}
                text.tick x="2" y=(y(max) + 4.0) { (format!("{max:.0}{unit}")) }
                text.tick x="2" y=(HEIGHT - BOTTOM) { "0" }
                text.tick x=(LEFT) y=(HEIGHT - 4.0) { (super::logs::time_of(from_ms).get(11..16).unwrap_or_default()) }
                text.tick x=(WIDTH - 40.0) y=(HEIGHT - 4.0) { (super::logs::time_of(to_ms).get(11..16).unwrap_or_default()) }
                @for mark in marks {
                    g.mark {
                        title { (mark.label) }
                        line x1=(x(mark.at_ms)) y1="4" x2=(x(mark.at_ms)) y2=(HEIGHT - BOTTOM) {}
                        circle cx=(x(mark.at_ms)) cy="8" r="5" {}
                    }
                }
                @for (name, class, points) in lines {
                    @let path: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(p.at_ms), y(p.value))).collect();
                    g class=(format!("series {class}")) {
                        title { (name) }
                        polyline points=(path.join(" ")) {}
                        @for p in points.iter() {
                            circle.point cx=(format!("{:.1}", x(p.at_ms))) cy=(format!("{:.1}", y(p.value))) r="2.5" {
                                title { (name) " " (format!("{:.1}", p.value)) (unit) " at " (super::logs::time_of(p.at_ms)) }
                            }
                        }
                    }
                }
            }
            p.legend {
                @for (name, class, _) in lines { span class=(format!("key {class}")) { (name) } " " }
                @if !marks.is_empty() { span.key.mark { "autoscaler decision (hover for why)" } }
            }
        }
    }
}

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct MetricsPage {
    /// The apps and stages that have a podgroup, to pick from.
    pub podgroups: Vec<(String, String)>,
    /// The one shown.
    pub app: String,
    /// Its stage.
    pub stage: String,
    /// The window's span (`15m`, `1h`, `6h`, `24h`).
    pub span: String,
    /// The window (Unix ms).
    pub window: (u64, u64),
    /// The series (absent when none is picked).
    pub series: Option<Series>,
}

/// The spans offered.
pub const SPANS: [(&str, u64); 4] = [
    ("15m", 900_000),
    ("1h", 3_600_000),
    ("6h", 21_600_000),
    ("24h", 86_400_000),
];

/// The page's body.
pub fn page(p: &MetricsPage) -> Markup {
    html! {
        h1 { "Metrics" @if !p.app.is_empty() { " of " (p.app) " on " (p.stage) } }
        form.filters method="get" action="/metrics" {
            div.field {
                label for="podgroup" { "App on stage" }
                select #podgroup name="podgroup" {
                    @for (app, stage) in &p.podgroups {
                        @let value = format!("{app}_{stage}");
                        option value=(value) selected[*app == p.app && *stage == p.stage] { (app) " on " (stage) }
                    }
                }
            }
            div.field {
                label for="span" { "Over the last" }
                select #span name="span" {
                    @for (name, _) in SPANS { option value=(name) selected[name == p.span] { (name) } }
                }
            }
            button type="submit" { "Show" }
        }
        @if p.podgroups.is_empty() { p.none { "Nothing runs yet: no metrics." } }
        @if let Some(s) = &p.series {
            p.links {
                a href=(format!("/logs?app={}&stage={}", encode(&p.app), encode(&p.stage))) { "Logs" } " · "
                a href=(format!("/audit?kind=podgroup&id={}_{}", encode(&p.app), encode(&p.stage))) { "Every recorded event" }
            }
            (chart("chart-cpu", "CPU (% of the allocation per replica)", "%",
                &[("CPU", "cpu", &s.cpu)], &s.marks, p.window, 100.0))
            (chart("chart-memory", "Memory (% of the allocation per replica)", "%",
                &[("memory", "memory", &s.memory)], &s.marks, p.window, 100.0))
            (chart("chart-replicas", "Replicas", "",
                &[("ready", "ready", &s.ready), ("desired", "desired", &s.desired)], &s.marks, p.window, 1.0))
            @if !s.marks.is_empty() {
                h2 { "Decisions" }
                ul #decisions { @for m in &s.marks { li { time { (super::logs::time_of(m.at_ms)) } " " (m.label) } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(at_ms: u64, cpu: f64) -> pb::PodgroupEvent {
        pb::PodgroupEvent {
            event: Some(pb::podgroup_event::Event::Observed(pb::MetricsObserved {
                observation: Some(pb::Observation {
                    at_ms,
                    ready_replicas: 1,
                    cpu_percent: cpu,
                    memory_percent: 20.0,
                }),
                recommended: 1,
            })),
        }
    }

    #[test]
    fn observations_become_points_and_decisions_marks_with_their_reason() {
        let mut s = Series::starting(0, 1);
        s.add(1_000, &observed(1_000, 50.0));
        s.add(2_000, &observed(2_000, 190.0));
        s.add(
            2_000,
            &pb::PodgroupEvent {
                event: Some(pb::podgroup_event::Event::Autoscaled(pb::Autoscaled {
                    from: 1,
                    to: 3,
                    reason: "cpu 190% over target 70%".into(),
                    ..Default::default()
                })),
            },
        );
        assert_eq!(s.cpu.len(), 2);
        assert_eq!(s.desired.last().map(|p| p.value), Some(3.0));
        assert_eq!(
            s.marks[0].label,
            "autoscaled 1 → 3: cpu 190% over target 70%"
        );
        let svg = chart(
            "c",
            "CPU",
            "%",
            &[("CPU", "cpu", &s.cpu)],
            &s.marks,
            (0, 4_000),
            100.0,
        )
        .into_string();
        assert_eq!(svg.matches("class=\"point\"").count(), 2, "{svg}");
        assert!(svg.contains("<title>autoscaled 1 → 3: cpu 190% over target 70%</title>"));
        // The scale grows to the largest value: 190 % is drawn inside the chart.
        assert!(svg.contains("190%"), "{svg}");
    }
}
