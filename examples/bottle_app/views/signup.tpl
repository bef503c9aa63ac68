% rebase('base', title='Sign up')
<h1>Sign up</h1>
<form method="post">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <label for="email">Email</label>
  <input type="email" id="email" name="email" value="{{email}}" autocomplete="email" required>
  <label for="password">Password (at least 8 characters)</label>
  <input type="password" id="password" name="password" autocomplete="new-password" required>
  <button type="submit">Sign up</button>
</form>
