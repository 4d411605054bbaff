// A time-series chart (uPlot). Its box has a fixed height from the first render, so data arriving later never
// shifts the layout; the series' numbers are also given as a table for screen readers.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef } from "preact/hooks";

export interface Series {
  label: string;
  /** a CSS colour */
  stroke: string;
  values: (number | null)[];
  /** how a value is written on the axis and in the legend */
  format?: (v: number) => string;
}

interface ChartProps {
  title: string;
  /** unix seconds */
  times: number[];
  series: Series[];
  height?: number;
}

export function TimeChart({ title, times, series, height = 220 }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const format = series[0]?.format ?? ((v: number) => String(v));
    const style = getComputedStyle(el);
    const ink = style.color;
    const line = style.getPropertyValue("--line").trim() || "#d0d7de";
    const plot = new uPlot({
      width: el.clientWidth || 600, height,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2,
                                           value: (_u: uPlot, v: number | null) => (v === null ? "—" : (s.format ?? format)(v)) }))],
      // a canvas knows no CSS variables or currentColor: the theme's colours are read off the page
      axes: [{ stroke: ink, grid: { stroke: line } },
             { stroke: ink, grid: { stroke: line }, size: 96, values: (_u: uPlot, ticks: number[]) => ticks.map(format) }],
      legend: { show: true },
    }, [times, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 600, height }));
    resize.observe(el);
    return () => { resize.disconnect(); plot.destroy(); };
  }, [times, series, height]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-box" style={{ minHeight: `${height + 40}px` }} aria-hidden="true" />
    </figure>
  );
}
