/* Stands in for react-inlinesvg in jsdom: an empty svg named after the icon file. */
import React from 'react';

export default function InlineSVG({ src }: { src: string }) {
  const name = src.replace(/^.*\/(.+)\.svg$/, '$1');
  return <svg data-testid={`icon-${name}`} viewBox="0 0 24 24" />;
}
