-- The server's inlay hints (scaling classes, inferred types) as end-of-line virtual text, for
-- Neovim versions that cannot show inlay hints themselves (before 0.10: no vim.lsp.inlay_hint).
-- The plugin asks for `textDocument/inlayHint` itself when the server attaches and, debounced,
-- after every change, and puts each line's hints in one extmark of its own namespace.

local M = {}

M.namespace = vim.api.nvim_create_namespace('compart_hints')
-- Wait this long after the last change before asking: a request per keystroke would only be
-- overtaken by the next one.
M.debounce_ms = 200

vim.cmd('highlight default link CompartInlayHint Comment')

-- bufnr -> { timer, client_id, tick }: one pending refresh per buffer.
local state = {}

--- Whether this Neovim shows inlay hints natively (then the virtual text would repeat them).
function M.native()
  return vim.lsp.inlay_hint ~= nil
end

local function clear(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  end
end

--- What ends `before`: a name (`item`) or a call with its arguments (`count(voter)`).
local function typed_text(before)
  before = before:gsub('%s+$', '')
  if before:sub(-1) ~= ')' then
    return before:match('([%w_]+)$')
  end
  local depth = 0
  for i = #before, 1, -1 do
    local c = before:sub(i, i)
    if c == ')' then
      depth = depth + 1
    elseif c == '(' then
      depth = depth - 1
      if depth == 0 then
        local name = before:sub(1, i - 1):match('([%w_]+)%s*$')
        return name and name .. before:sub(i)
      end
    end
  end
  return nil
end

--- The text of one hint at the end of its line. A type hint (`: int`) sits after the column or
--- variable it types, which is out of sight at the end of the line: name it (`n: int`).
local function hint_text(bufnr, hint)
  local label = hint.label
  if type(label) == 'table' then
    local parts = {}
    for _, part in ipairs(label) do
      parts[#parts + 1] = part.value
    end
    label = table.concat(parts)
  end
  if label:sub(1, 1) == ':' then
    local line = vim.api.nvim_buf_get_lines(bufnr, hint.position.line, hint.position.line + 1, false)[1] or ''
    local ok, col = pcall(vim.str_byteindex, line, hint.position.character, true)
    local name = ok and typed_text(line:sub(1, col))
    if name then
      label = name .. label
    end
  end
  return label
end

local function show(bufnr, hints)
  clear(bufnr)
  local by_line, lines = {}, {}
  for _, hint in ipairs(hints or {}) do
    local line = hint.position.line
    if not by_line[line] then
      by_line[line] = {}
      lines[#lines + 1] = line
    end
    table.insert(by_line[line], hint_text(bufnr, hint))
  end
  local count = vim.api.nvim_buf_line_count(bufnr)
  for _, line in ipairs(lines) do
    if line < count then
      vim.api.nvim_buf_set_extmark(bufnr, M.namespace, line, 0, {
        virt_text = { { table.concat(by_line[line], ' '), 'CompartInlayHint' } },
        virt_text_pos = 'eol',
        hl_mode = 'combine',
      })
    end
  end
end

--- Ask the server for the whole buffer's hints now and show them, unless the buffer changed
--- before the answer came (a newer request is then on its way).
function M.refresh(bufnr)
  local s = state[bufnr]
  local client = s and vim.lsp.get_client_by_id(s.client_id)
  if not client or not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = vim.api.nvim_buf_line_count(bufnr), character = 0 } },
  }
  client.request('textDocument/inlayHint', params, function(err, result)
    if err or not vim.api.nvim_buf_is_loaded(bufnr) or vim.api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return
    end
    show(bufnr, result)
  end, bufnr)
end

local function schedule(bufnr)
  local s = state[bufnr]
  if not s then
    return
  end
  s.timer:stop()
  s.timer:start(M.debounce_ms, 0, vim.schedule_wrap(function() M.refresh(bufnr) end))
end

function M.detach(bufnr)
  local s = state[bufnr]
  if s then
    state[bufnr] = nil
    s.timer:stop()
    s.timer:close()
  end
  clear(bufnr)
end

--- The server went away: its hints would go stale.
function M.detach_client(client_id)
  for bufnr, s in pairs(state) do
    if s.client_id == client_id then
      M.detach(bufnr)
    end
  end
end

--- Show the hints of `client` in `bufnr` and keep them up to date.
function M.attach(client, bufnr)
  if state[bufnr] then
    state[bufnr].client_id = client.id
  else
    state[bufnr] = { timer = vim.loop.new_timer(), client_id = client.id }
    vim.api.nvim_buf_attach(bufnr, false, {
      -- Returning true detaches: the buffer stopped showing hints (detach, or server gone).
      on_lines = function()
        if not state[bufnr] then
          return true
        end
        schedule(bufnr)
      end,
      on_reload = function() schedule(bufnr) end,
      on_detach = function() M.detach(bufnr) end,
    })
  end
  M.refresh(bufnr)
end

return M
