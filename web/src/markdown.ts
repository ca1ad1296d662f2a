// Agent text is markdown written by a model that has read untrusted repository content, so it is
// rendered with raw HTML disabled (markdown-it escapes it) and only safe link schemes allowed.

import MarkdownIt from "markdown-it";

const md = new MarkdownIt({ html: false, linkify: true, breaks: false });
const SAFE_LINK = /^(https?:|mailto:|#|\/)/i;

md.validateLink = (url: string) => SAFE_LINK.test(url.trim());
const defaultLinkOpen = md.renderer.rules.link_open ?? ((tokens, i, options, _env, self) => self.renderToken(tokens, i, options));
md.renderer.rules.link_open = (tokens, i, options, env, self) => {
  tokens[i].attrSet("rel", "noopener noreferrer nofollow");
  tokens[i].attrSet("target", "_blank");
  return defaultLinkOpen(tokens, i, options, env, self);
};

/** Safe HTML for agent-written markdown. */
export function renderMarkdown(text: string): string {
  return md.render(text);
}
