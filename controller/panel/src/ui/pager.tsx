// Paging for server-side lists: the API pages, filters and searches; the panel only asks for one page.
import { common } from "../i18n/common";
import { useText } from "../i18n/text";

export function Pager({ page, size, total, onPage }: { page: number; size: number; total: number;
                                                        onPage: (page: number) => void }) {
  const t = useText(common);
  const pages = Math.max(1, Math.ceil(total / size));
  return (
    <nav class="pager" aria-label={t("page", { page, pages })}>
      <button type="button" disabled={page <= 1} onClick={() => onPage(page - 1)}>{t("previous")}</button>
      <span aria-live="polite">{t("page", { page, pages })} · {t("total", { count: total })}</span>
      <button type="button" disabled={page >= pages} onClick={() => onPage(page + 1)}>{t("next")}</button>
    </nav>
  );
}
